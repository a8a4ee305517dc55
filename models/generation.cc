#include "models/generation.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <stdexcept>

namespace vitrine::models {

int64_t pick_next(const at::Tensor& logits_in, const GenerationOptions& o,
                  const std::vector<int64_t>& seen, at::Generator& generator) {
  // Plain greedy decoding needs neither a copy nor the generator.
  if (o.temperature <= 0.0 && (o.repetition_penalty == 1.0 || seen.empty())) {
    return logits_in.argmax().item<int64_t>();
  }
  // Sampling runs on the CPU whatever the model's device: the generators are CPU ones.
  at::Tensor logits = logits_in.to(at::kCPU, at::kFloat).clone();  // [vocab]
  if (o.repetition_penalty != 1.0 && !seen.empty()) {
    const at::Tensor idx =
        at::tensor(seen, at::TensorOptions().dtype(at::kLong)).to(logits.device());
    const at::Tensor picked = logits.index_select(0, idx);
    const at::Tensor penalized =
        at::where(picked > 0, picked / o.repetition_penalty, picked * o.repetition_penalty);
    logits.index_copy_(0, idx, penalized);
  }
  if (o.temperature <= 0.0) return logits.argmax().item<int64_t>();
  logits = logits / o.temperature;
  if (o.top_k > 0 && o.top_k < logits.size(0)) {
    const at::Tensor kth = std::get<0>(logits.topk(o.top_k)).select(0, o.top_k - 1);
    logits = logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
  }
  if (o.top_p < 1.0) {
    auto [sorted, order] = logits.sort(/*dim=*/0, /*descending=*/true);
    const at::Tensor cumulative = sorted.softmax(0).cumsum(0);
    // Drop tokens once the mass before them already reaches top_p (the first always stays).
    const at::Tensor drop_sorted = (cumulative - sorted.softmax(0)) >= o.top_p;
    const at::Tensor drop = at::zeros_like(drop_sorted).scatter(0, order, drop_sorted);
    logits = logits.masked_fill(drop, -std::numeric_limits<float>::infinity());
  }
  const at::Tensor probs = logits.softmax(0);
  return at::multinomial(probs, 1, /*replacement=*/false, generator).item<int64_t>();
}

GenerationResult generate(LlamaForCausalLM& model, const Tokenizer& tokenizer,
                          const std::vector<int64_t>& prompt, const GenerationOptions& o,
                          int adapter_slot, const TokenCallback& on_token) {
  BatchTokenCallback row_callback;
  if (on_token) {
    row_callback = [&](size_t, int64_t id, std::string_view text) { return on_token(id, text); };
  }
  return std::move(
      generate_batch(model, tokenizer, {BatchRequest{prompt, adapter_slot}}, o, row_callback)[0]);
}

namespace {

// generate_batch with an optional tokenizer: without one, texts stay empty.
std::vector<GenerationResult> run_batch(LlamaForCausalLM& model, const Tokenizer* tokenizer,
                                        const std::vector<BatchRequest>& requests,
                                        const GenerationOptions& o,
                                        const BatchTokenCallback& on_token) {
  const size_t n = requests.size();
  std::vector<GenerationResult> results(n);
  if (n == 0) return results;
  if (tokenizer == nullptr && !o.stop_strings.empty()) {
    throw std::invalid_argument("generation: stop strings need a tokenizer");
  }
  c10::InferenceMode inference;
  const auto device = model->lm_head_weight().device();
  size_t longest = 0;
  for (const auto& r : requests) {
    if (r.prompt.empty()) throw std::invalid_argument("generate_batch: empty prompt");
    longest = std::max(longest, r.prompt.size());
  }
  // Left-pad every prompt to the longest; the pad id is never attended to.
  std::vector<int64_t> pad(n), flat;
  RowAdapters rows(n);
  std::vector<at::Generator> generators;
  std::vector<std::vector<int64_t>> seen(n);
  std::vector<std::unique_ptr<StreamDecoder>> decoders;
  std::vector<bool> done(n, false);
  for (size_t i = 0; i < n; ++i) {
    const auto& prompt = requests[i].prompt;
    pad[i] = static_cast<int64_t>(longest - prompt.size());
    flat.insert(flat.end(), static_cast<size_t>(pad[i]), prompt.front());
    flat.insert(flat.end(), prompt.begin(), prompt.end());
    rows[i] = requests[i].adapter_slot;
    generators.push_back(at::detail::createCPUGenerator(o.seed));
    seen[i] = prompt;
    if (tokenizer != nullptr) {
      decoders.push_back(std::make_unique<StreamDecoder>(*tokenizer));
      for (const int64_t id : prompt) decoders[i]->push(static_cast<int32_t>(id));
      decoders[i]->flush();
    }
    results[i].finish_reason = "length";
  }
  // Rows without padding need no padding mask (decode steps then skip it).
  if (std::all_of(pad.begin(), pad.end(), [](int64_t p) { return p == 0; })) pad.clear();
  KvCache cache;
  cache.reserve(static_cast<int64_t>(longest) + o.max_new_tokens);
  at::Tensor input = at::tensor(flat, at::TensorOptions().dtype(at::kLong))
                         .view({static_cast<int64_t>(n), static_cast<int64_t>(longest)})
                         .to(device);  // [n, longest]
  size_t active = n;
  for (int step = 0; step < o.max_new_tokens && active > 0; ++step) {
    const at::Tensor last = model->forward_last(input, &cache, rows, pad);  // [n, vocab]
    std::vector<int64_t> next(n);
    for (size_t i = 0; i < n; ++i) {
      if (done[i]) {
        next[i] = seen[i].back();  // finished rows keep a slot until the batch ends
        continue;
      }
      const int64_t id = pick_next(last[static_cast<int64_t>(i)], o, seen[i], generators[i]);
      next[i] = id;
      GenerationResult& r = results[i];
      auto finish = [&](const char* reason) {
        r.finish_reason = reason;
        done[i] = true;
        --active;
      };
      if (std::find(o.eos_ids.begin(), o.eos_ids.end(), id) != o.eos_ids.end()) {
        finish("stop");
        continue;
      }
      r.ids.push_back(id);
      seen[i].push_back(id);
      std::string piece = tokenizer ? decoders[i]->push(static_cast<int32_t>(id)) : std::string();
      r.text += piece;
      bool stopped = false;
      for (const auto& stop : o.stop_strings) {
        if (!stop.empty() && r.text.ends_with(stop)) {
          const size_t keep = r.text.size() - stop.size();
          const size_t before = r.text.size() - piece.size();
          piece = keep > before ? piece.substr(0, keep - before) : std::string();
          r.text.resize(keep);
          stopped = true;
          break;
        }
      }
      if (on_token && !on_token(i, id, piece)) {
        finish("cancelled");
      } else if (stopped) {
        finish("stop");
      }
    }
    input = at::tensor(next, at::TensorOptions().dtype(at::kLong))
                .view({static_cast<int64_t>(n), 1})
                .to(device);
  }
  for (size_t i = 0; i < n && tokenizer != nullptr; ++i) {
    if (results[i].finish_reason != "length") continue;
    const std::string rest = decoders[i]->flush();
    results[i].text += rest;
    if (on_token && !rest.empty()) on_token(i, -1, rest);
  }
  return results;
}

}  // namespace

std::vector<GenerationResult> generate_batch(LlamaForCausalLM& model, const Tokenizer& tokenizer,
                                             const std::vector<BatchRequest>& requests,
                                             const GenerationOptions& options,
                                             const BatchTokenCallback& on_token) {
  return run_batch(model, &tokenizer, requests, options, on_token);
}

std::vector<GenerationResult> generate_batch_ids(LlamaForCausalLM& model,
                                                 const std::vector<BatchRequest>& requests,
                                                 const GenerationOptions& options,
                                                 const BatchTokenCallback& on_token) {
  return run_batch(model, nullptr, requests, options, on_token);
}

}  // namespace vitrine::models
