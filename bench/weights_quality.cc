// Benchmark: what serving from bf16 or int8 weights costs in quality,
// against the same checkpoint in float32.
//
// Renders --examples held-out examples of a prepared dataset's task (the
// task's prompt in the model's chat format, then the reference answer and
// EOS), tokenizes them with --tokenizer (the model's own by default; a
// random preset has none, so borrow one of its vocabulary size), and runs
// every sequence through the model loaded in each format, packed as the
// daemon loads it. Two ways of running a sequence, both reported:
//   prefill: the whole sequence in one forward (the rows go through the
//            prefill kernels: bf16-dot for int8 and bf16, activations
//            rounded to bf16);
//   decode:  token by token with the KV cache (the decode kernels: int8
//            widened to float32, exact up to the weights' quantization).
// Per format against float32 over the first --positions positions: the
// largest and mean |logit difference| (and the float32 logits' standard
// deviation, for scale) and the share of positions whose greedy (argmax)
// token is the same; over every example, the perplexity of the reference
// answers' tokens.
// Not a test: it reports, docs/models.md records.
//
// Usage: weights_quality --model DIR --dataset out/dataset [--task describe]
//        [--tokenizer DIR] [--examples 1000] [--positions 1000] [--max-len 256]
//        [--formats f32,bf16,int8] [--json FILE]
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/llama.h"
#include "models/runtime.h"
#include "models/tokenizer/chat_format.h"
#include "models/tokenizer/tokenizer.h"
#include "prompts/prompts.h"

namespace {

namespace fs = std::filesystem;
namespace m = vitrine::models;

struct Example {
  std::vector<int64_t> ids;
  int64_t answer_start = 0;  // ids[answer_start..] are the reference answer and EOS
};

std::vector<Example> read_examples(const std::string& dataset, const std::string& task_name,
                                   const m::Tokenizer& tokenizer, m::ChatFamily family,
                                   int64_t count, int64_t max_len, int64_t vocab) {
  const auto task = vitrine::prompts::parse_task(task_name);
  const auto fields = vitrine::prompts::task_fields(task);
  std::ifstream in(fs::path(dataset) / "tasks" / task_name / "test.jsonl");
  if (!in)
    throw std::runtime_error(fmt::format("no tasks/{}/test.jsonl in '{}'", task_name, dataset));
  std::vector<Example> out;
  std::string line;
  while (static_cast<int64_t>(out.size()) < count && std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    const std::string prompt = m::render_chat_prompt(
        family, vitrine::prompts::task_turn(task, j[fields.input].get<std::string>()));
    const auto prompt_ids = tokenizer.encode(prompt, /*add_bos=*/true);
    auto ids = tokenizer.encode(prompt + j[fields.output].get<std::string>(), true);
    if (!tokenizer.eos_ids().empty()) ids.push_back(tokenizer.eos_ids().front());
    if (static_cast<int64_t>(ids.size()) > max_len) ids.resize(static_cast<size_t>(max_len));
    Example e{{ids.begin(), ids.end()}, static_cast<int64_t>(prompt_ids.size())};
    for (int64_t& id : e.ids) id = std::min(id, vocab - 1);
    if (e.answer_start + 1 < static_cast<int64_t>(e.ids.size())) out.push_back(std::move(e));
  }
  return out;
}

// Logits [n, vocab] of a sequence: one forward, or token by token.
at::Tensor run_sequence(m::LlamaForCausalLM& model, const std::vector<int64_t>& ids, bool decode) {
  const at::Tensor t = at::tensor(ids).unsqueeze(0);  // [1, n]
  if (!decode) return model->forward(t)[0];
  m::KvCache cache;
  cache.reserve(static_cast<int64_t>(ids.size()));
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < t.size(1); ++i)
    rows.push_back(model->forward_last(t.narrow(1, i, 1), &cache)[0]);
  return at::stack(rows);
}

struct Tally {
  double max_error = 0, error_sum = 0, nll_sum = 0, scale_sum = 0;
  int64_t positions = 0, agree = 0, answer_tokens = 0;
};

}  // namespace

int main(int argc, char** argv) {
  m::reexec_with_passive_wait_policy(argv);
  CLI::App app{"logit error, greedy agreement and perplexity of bf16 and int8 weights against f32"};
  std::string model_dir, tokenizer_dir, dataset = "out/dataset", task = "describe",
                                        formats = "f32,bf16,int8", json_path;
  int64_t examples = 1000, positions = 1000, max_len = 256;
  int threads = 2;
  app.add_option("--model", model_dir, "Hugging Face model directory")->required();
  app.add_option("--tokenizer", tokenizer_dir, "directory of the tokenizer (default: the model's)");
  app.add_option("--dataset", dataset, "a prepared dataset")->capture_default_str();
  app.add_option("--task", task, "describe or qa")->capture_default_str();
  app.add_option("--examples", examples, "test examples at most")->capture_default_str();
  app.add_option("--positions", positions, "positions compared")->capture_default_str();
  app.add_option("--max-len", max_len, "tokens per sequence at most")->capture_default_str();
  app.add_option("--formats", formats, "formats besides f32, comma-separated")
      ->capture_default_str();
  app.add_option("--threads", threads)->capture_default_str();
  app.add_option("--json", json_path, "append each result as a JSON line to this file");
  CLI11_PARSE(app, argc, argv);
  try {
    m::init_runtime({.threads = threads});
    c10::InferenceMode inference;
    if (tokenizer_dir.empty()) tokenizer_dir = model_dir;
    std::vector<std::string> names;
    std::stringstream ss(formats);
    for (std::string f; std::getline(ss, f, ',');) {
      if (f != "f32") names.push_back(f);
    }
    m::LlamaForCausalLM reference =
        m::load_llama(model_dir, "cpu", m::WeightLayout::kPacked, m::BaseDtype::kF32);
    std::vector<m::LlamaForCausalLM> models;
    for (const auto& f : names) {
      models.push_back(
          m::load_llama(model_dir, "cpu", m::WeightLayout::kPacked, m::parse_base_dtype(f)));
    }
    const auto tokenizer = m::load_tokenizer(tokenizer_dir);
    const auto seqs = read_examples(dataset, task, *tokenizer, m::detect_chat_family(tokenizer_dir),
                                    examples, max_len, reference->config().vocab_size);
    const std::string name = fs::path(model_dir).filename().string();
    for (const bool decode : {false, true}) {
      Tally f32;
      std::vector<Tally> tallies(names.size());
      for (const Example& e : seqs) {
        const int64_t length = static_cast<int64_t>(e.ids.size());
        // Positions still within the --positions compared.
        const int64_t n = std::clamp<int64_t>(positions - f32.positions, 0, length);
        const at::Tensor want = run_sequence(reference, e.ids, decode);  // [length, vocab]
        const at::Tensor targets = at::tensor(e.ids).narrow(0, 1, length - 1);
        // NLL of the answer tokens: logits at position i predict ids[i + 1].
        auto tally = [&](Tally& t, const at::Tensor& logits) {
          const int64_t first = e.answer_start - 1, count = length - 1 - first;
          const at::Tensor logp = at::log_softmax(logits.narrow(0, first, count), -1);
          t.nll_sum -=
              logp.gather(1, targets.narrow(0, first, count).unsqueeze(1)).sum().item<double>();
          t.answer_tokens += count;
          t.agree += (logits.narrow(0, 0, n).argmax(-1) == want.narrow(0, 0, n).argmax(-1))
                         .sum()
                         .item<int64_t>();
          t.positions += n;
        };
        tally(f32, want);
        f32.scale_sum += want.narrow(0, 0, n).std(-1).sum().item<double>();
        for (size_t i = 0; i < models.size(); ++i) {
          const at::Tensor got = run_sequence(models[i], e.ids, decode);
          if (n > 0) {
            const at::Tensor error = (got.narrow(0, 0, n) - want.narrow(0, 0, n)).abs();
            tallies[i].max_error = std::max(tallies[i].max_error, error.max().item<double>());
            tallies[i].error_sum += error.mean(-1).sum().item<double>();
          }
          tally(tallies[i], got);
        }
      }
      const double ppl32 = std::exp(f32.nll_sum / static_cast<double>(f32.answer_tokens));
      std::printf("%s, %s: %ld positions, %ld answer tokens, f32 perplexity %.4f, logit std %.3f\n",
                  name.c_str(), decode ? "decode" : "prefill", static_cast<long>(f32.positions),
                  static_cast<long>(f32.answer_tokens), ppl32,
                  f32.scale_sum / static_cast<double>(f32.positions));
      for (size_t i = 0; i < names.size(); ++i) {
        const Tally& t = tallies[i];
        const double ppl = std::exp(t.nll_sum / static_cast<double>(t.answer_tokens));
        nlohmann::ordered_json r = {
            {"model", name},
            {"path", decode ? "decode" : "prefill"},
            {"weights", names[i]},
            {"positions", t.positions},
            {"answer_tokens", t.answer_tokens},
            {"max_logit_error", t.max_error},
            {"mean_logit_error", t.error_sum / static_cast<double>(t.positions)},
            {"f32_logit_std", f32.scale_sum / static_cast<double>(f32.positions)},
            {"top1_agreement", static_cast<double>(t.agree) / static_cast<double>(t.positions)},
            {"perplexity", ppl},
            {"f32_perplexity", ppl32},
            {"perplexity_change", ppl / ppl32 - 1},
        };
        std::printf(
            "  %-5s max |dlogit| %.4f, mean %.5f, top-1 agreement %.1f%%, perplexity %.4f "
            "(%+.3f%%)\n",
            names[i].c_str(), t.max_error, r["mean_logit_error"].get<double>(),
            100 * r["top1_agreement"].get<double>(), ppl, 100 * (ppl / ppl32 - 1));
        if (!json_path.empty()) {
          std::ofstream out(json_path, std::ios::app);
          out << r.dump() << "\n";
        }
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weights_quality: error: %s\n", e.what());
    return 1;
  }
}
