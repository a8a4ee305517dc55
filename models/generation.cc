#include "models/generation.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace vitrine::models {

namespace {

// Temperatures below the smallest normal float are greedy: dividing by them
// in float overflows or divides by zero.
constexpr double kGreedyBelow = std::numeric_limits<float>::min();

[[noreturn]] void throw_not_finite() {
  throw std::runtime_error(
      "sampling: the model's logits for this request are not finite (NaN): its weights or "
      "adapter are damaged");
}

// Greedy choice over CPU logits in plain loops (the serving engine picks for
// every row of every step, where a handful of tensor ops per row cost more
// than the choice): the repetition penalty applied as transformers applies
// it, in float (seen logits above 0 divided by it, the others multiplied),
// once per distinct seen id, then the first highest logit, as argmax takes it.
int64_t greedy_pick(const float* logits, int64_t vocab, double repetition_penalty,
                    const std::vector<int64_t>& seen) {
  // The first index of the highest value, as argmax picks it: the highest
  // value found eight lanes at a time, then its first position.
  auto first_max = [vocab](const float* v) {
    float top = v[0];
    int64_t i = 0;
    if (vocab >= 8) {
      float lanes[8];
      std::copy(v, v + 8, lanes);
      for (i = 8; i + 8 <= vocab; i += 8) {
        for (int lane = 0; lane < 8; ++lane) {
          lanes[lane] = v[i + lane] > lanes[lane] ? v[i + lane] : lanes[lane];
        }
      }
      for (const float lane : lanes) top = std::max(top, lane);
    }
    for (; i < vocab; ++i) top = std::max(top, v[i]);
    for (int64_t j = 0; j < vocab; ++j) {
      if (v[j] == top) return j;
    }
    return int64_t{0};  // unreachable: NaNs are refused below
  };
  // NaN is the one value no comparison finds: one anywhere means the model's
  // output is broken, not that the others win.
  for (int64_t j = 0; j < vocab; ++j) {
    if (std::isnan(logits[j])) throw_not_finite();
  }
  if (repetition_penalty == 1.0 || seen.empty()) return first_max(logits);
  std::vector<float> penalized(logits, logits + vocab);
  std::vector<int64_t> ids(seen);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  const float p = static_cast<float>(repetition_penalty);
  for (const int64_t id : ids) {
    float& v = penalized[static_cast<size_t>(id)];
    v = v > 0 ? v / p : v * p;
  }
  return first_max(penalized.data());
}

}  // namespace

void validate_generation_options(const GenerationOptions& o) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("generation: " + what); };
  if (o.max_new_tokens < 0) fail(fmt::format("max_new_tokens {} is negative", o.max_new_tokens));
  if (!std::isfinite(o.temperature) || o.temperature < 0) {
    fail(fmt::format("temperature {} is not a finite number >= 0", o.temperature));
  }
  if (o.top_k < 0) fail(fmt::format("top_k {} is negative", o.top_k));
  if (!std::isfinite(o.top_p) || o.top_p <= 0 || o.top_p > 1) {
    fail(fmt::format("top_p {} is not in (0, 1]", o.top_p));
  }
  if (!std::isfinite(o.repetition_penalty) || o.repetition_penalty <= 0) {
    fail(fmt::format("repetition_penalty {} is not a finite number > 0", o.repetition_penalty));
  }
}

int64_t pick_next(const at::Tensor& logits_in, const GenerationOptions& o,
                  const std::vector<int64_t>& seen, at::Generator& generator) {
  if (o.temperature < kGreedyBelow && logits_in.device().is_cpu() &&
      logits_in.scalar_type() == at::kFloat && logits_in.is_contiguous()) {
    return greedy_pick(logits_in.data_ptr<float>(), logits_in.numel(), o.repetition_penalty, seen);
  }
  // Sampling runs on the CPU whatever the model's device: the generators are CPU ones.
  at::Tensor logits = logits_in.to(at::kCPU, at::kFloat).clone();  // [vocab]
  if (logits.isnan().any().item<bool>()) throw_not_finite();
  // Plain greedy decoding needs the generator no more than a copy.
  if (o.temperature < kGreedyBelow && (o.repetition_penalty == 1.0 || seen.empty())) {
    return logits.argmax().item<int64_t>();
  }
  if (o.repetition_penalty != 1.0 && !seen.empty()) {
    const at::Tensor idx =
        at::tensor(seen, at::TensorOptions().dtype(at::kLong)).to(logits.device());
    const at::Tensor picked = logits.index_select(0, idx);
    const at::Tensor penalized =
        at::where(picked > 0, picked / o.repetition_penalty, picked * o.repetition_penalty);
    logits.index_copy_(0, idx, penalized);
    // A tiny penalty divides a logit into +Inf: the largest float ranks it as well.
    logits.clamp_max_(std::numeric_limits<float>::max());
  }
  if (o.temperature < kGreedyBelow) return logits.argmax().item<int64_t>();
  at::Tensor scaled = logits / o.temperature;
  // A small temperature can overflow a logit; the same distribution with the
  // largest logit at 0 cannot.
  if (!std::isfinite(scaled.max().item<float>())) scaled = (logits - logits.max()) / o.temperature;
  logits = scaled;
  if (o.top_k > 0 && o.top_k < logits.size(0)) {
    const at::Tensor kth = std::get<0>(logits.topk(o.top_k)).select(0, o.top_k - 1);
    logits = logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
  }
  if (o.top_p < 1.0) {
    auto [sorted, order] = logits.sort(/*dim=*/0, /*descending=*/true);
    const at::Tensor cumulative = sorted.softmax(0).cumsum(0);
    // Drop tokens once the mass before them already reaches top_p (the first always stays).
    at::Tensor drop_sorted = (cumulative - sorted.softmax(0)) >= o.top_p;
    drop_sorted.narrow(0, 0, 1).fill_(false);  // a top_p below float's reach must not drop it
    const at::Tensor drop = at::zeros_like(drop_sorted).scatter(0, order, drop_sorted);
    logits = logits.masked_fill(drop, -std::numeric_limits<float>::infinity());
  }
  const at::Tensor probs = logits.softmax(0);
  if (!probs.isfinite().all().item<bool>()) throw_not_finite();
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

Sequence::Sequence(const std::vector<int64_t>& prompt, const GenerationOptions& options,
                   const Tokenizer* tokenizer)
    : options_(options), generator_(at::detail::createCPUGenerator(options.seed)), seen_(prompt) {
  if (prompt.empty()) throw std::invalid_argument("generation: empty prompt");
  validate_generation_options(options);
  if (tokenizer == nullptr && !options.stop_strings.empty()) {
    throw std::invalid_argument("generation: stop strings need a tokenizer");
  }
  if (tokenizer != nullptr) {
    // Primed with the prompt, so the first generated piece decodes as it
    // would in context (a leading space stays).
    decoder_ = std::make_unique<StreamDecoder>(*tokenizer);
    decoder_->prime(prompt);
  }
  result_.finish_reason = "length";
  if (options.max_new_tokens <= 0) done_ = true;
}

void Sequence::finish(const char* reason) {
  if (done_) return;
  result_.finish_reason = reason;
  done_ = true;
}

int64_t Sequence::advance(const at::Tensor& logits, const TokenCallback& on_token) {
  const int64_t id = pick_next(logits, options_, seen_, generator_);
  if (done_) return id;
  if (std::find(options_.eos_ids.begin(), options_.eos_ids.end(), id) != options_.eos_ids.end()) {
    finish("stop");
    return id;
  }
  result_.ids.push_back(id);
  seen_.push_back(id);
  std::string piece = decoder_ ? decoder_->push(static_cast<int32_t>(id)) : std::string();
  result_.text += piece;
  bool stopped = false;
  for (const auto& stop : options_.stop_strings) {
    if (!stop.empty() && result_.text.ends_with(stop)) {
      const size_t keep = result_.text.size() - stop.size();
      const size_t before = result_.text.size() - piece.size();
      piece = keep > before ? piece.substr(0, keep - before) : std::string();
      result_.text.resize(keep);
      stopped = true;
      break;
    }
  }
  if (on_token && !on_token(id, piece)) {
    finish("cancelled");
  } else if (stopped) {
    finish("stop");
  } else if (static_cast<int64_t>(result_.ids.size()) >= options_.max_new_tokens) {
    finish("length");
    // What the decoder held back (an unfinished character) ends the text.
    const std::string rest = decoder_ ? decoder_->flush() : std::string();
    result_.text += rest;
    if (on_token && !rest.empty()) on_token(-1, rest);
  }
  return id;
}

namespace {

// generate_batch with an optional tokenizer: without one, texts stay empty.
std::vector<GenerationResult> run_batch(LlamaForCausalLM& model, const Tokenizer* tokenizer,
                                        const std::vector<BatchRequest>& requests,
                                        const GenerationOptions& o,
                                        const BatchTokenCallback& on_token) {
  const size_t n = requests.size();
  if (n == 0) return {};
  c10::InferenceMode inference;
  const auto device = model->lm_head_weight().device();
  size_t longest = 0;
  std::vector<Sequence> sequences;
  sequences.reserve(n);
  for (const auto& r : requests) {
    sequences.emplace_back(r.prompt, o, tokenizer);
    longest = std::max(longest, r.prompt.size());
  }
  // Left-pad every prompt to the longest; the pad id is never attended to.
  std::vector<int64_t> pad(n), flat;
  RowAdapters rows(n);
  for (size_t i = 0; i < n; ++i) {
    const auto& prompt = requests[i].prompt;
    pad[i] = static_cast<int64_t>(longest - prompt.size());
    flat.insert(flat.end(), static_cast<size_t>(pad[i]), prompt.front());
    flat.insert(flat.end(), prompt.begin(), prompt.end());
    rows[i] = requests[i].adapter_slot;
  }
  // Rows without padding need no padding mask (decode steps then skip it).
  if (std::all_of(pad.begin(), pad.end(), [](int64_t p) { return p == 0; })) pad.clear();
  KvCache cache;
  cache.reserve(static_cast<int64_t>(longest) + o.max_new_tokens);
  at::Tensor input = at::tensor(flat, at::TensorOptions().dtype(at::kLong))
                         .view({static_cast<int64_t>(n), static_cast<int64_t>(longest)})
                         .to(device);  // [n, longest]
  auto active = [&] {
    return std::any_of(sequences.begin(), sequences.end(),
                       [](const Sequence& s) { return !s.done(); });
  };
  while (active()) {
    const at::Tensor last = model->forward_last(input, &cache, rows, pad);  // [n, vocab]
    std::vector<int64_t> next(n);
    for (size_t i = 0; i < n; ++i) {
      // Finished rows keep their slot until the batch ends, fed their last id.
      if (!sequences[i].done()) {
        TokenCallback row_callback;
        if (on_token) {
          row_callback = [&, i](int64_t id, std::string_view text) {
            return on_token(i, id, text);
          };
        }
        sequences[i].advance(last[static_cast<int64_t>(i)], row_callback);
      }
      next[i] = sequences[i].last_id();
    }
    input = at::tensor(next, at::TensorOptions().dtype(at::kLong))
                .view({static_cast<int64_t>(n), 1})
                .to(device);
  }
  std::vector<GenerationResult> results;
  for (Sequence& s : sequences) results.push_back(s.take_result());
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
