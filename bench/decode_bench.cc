// Benchmark: how fast models/ prefills and decodes, with LoRA adapters
// applied per row as the daemon serves them.
//
// Measures, on one Hugging Face checkpoint, the same things as the plain
// PyTorch peer (../shared/bench/torch_lora_baseline.py --mode generate):
// greedy decoding of --new-tokens after a --prompt-len prompt of random ids,
// at each batch size of --batches. Every row carries a LoRA adapter of rank
// --lora-r on --lora-targets, unmerged, as the peer's; a batch of several
// rows mixes two different adapters and the base model (row i uses adapter
// i % 3, the third being none). Prefill is the first forward, decode the
// rest, counted as the peer counts them. Then one long prefill of
// --prefill-len tokens gives the matrix-product throughput, beside the
// machine's own single-matrix-product ceiling measured in the same run.
// Not a test: figures depend on the machine.
//
// Usage: decode_bench --model DIR [--batches 1,8] [--layout packed|checkpoint]
//        [--weights f32|bf16|int8|auto] [--json FILE] [--threads 2]
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/generation.h"
#include "models/llama.h"
#include "models/runtime.h"

namespace {

using Clock = std::chrono::steady_clock;
using vitrine::models::LlamaForCausalLM;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// Installs random adapters in slots 0 and 1 on every target projection.
void attach_random_adapters(LlamaForCausalLM& model, const std::vector<std::string>& targets,
                            int64_t rank, double alpha) {
  for (auto& [name, layer] : model->projections()) {
    const bool wanted = std::any_of(targets.begin(), targets.end(), [&](const std::string& t) {
      return name.size() >= t.size() && name.compare(name.size() - t.size(), t.size(), t) == 0;
    });
    if (!wanted) continue;
    const int64_t out = layer->out_features(), in = layer->in_features();
    for (int slot = 0; slot < 2; ++slot) {
      layer->set_adapter(slot, {.a = at::randn({rank, in}) * 0.02,
                                .b = at::randn({out, rank}) * 0.02,
                                .scaling = alpha / static_cast<double>(rank)});
    }
  }
}

// FLOPs of a causal forward over `tokens` positions with logits for the
// last one only: two per multiply-add of every projection, the attention
// products over the causal half, and the head once.
double prefill_flops(const vitrine::models::LlamaConfig& c, int64_t tokens, int64_t lora_rank,
                     size_t lora_targets) {
  const double h = static_cast<double>(c.hidden_size), d = static_cast<double>(c.head_dim);
  const double heads = static_cast<double>(c.num_attention_heads);
  const double kv = static_cast<double>(c.num_key_value_heads);
  const double mlp = static_cast<double>(c.intermediate_size);
  const double per_layer = h * heads * d * 2 + h * kv * d * 2 + 3 * h * mlp;  // weights
  const double lora = static_cast<double>(lora_targets) * static_cast<double>(lora_rank) * 2 * h;
  const double n = static_cast<double>(tokens);
  const double layers = static_cast<double>(c.num_hidden_layers);
  const double attention = 2 * 2 * heads * d * n * (n + 1) / 2;  // QK^T and PV, causal
  return layers * (2 * n * (per_layer + lora) + attention) +
         2 * h * static_cast<double>(c.vocab_size);
}

// Bytes of weights a decode step streams from memory: every projection and
// the head once, in the format they are held in (int8 with a float32 scale
// per output row). The KV cache and the LoRA factors come on top (small at
// these lengths and ranks).
double weight_bytes_per_step(const vitrine::models::LlamaConfig& c, const std::string& weights) {
  const double h = static_cast<double>(c.hidden_size), d = static_cast<double>(c.head_dim);
  const double q = static_cast<double>(c.num_attention_heads) * d;
  const double kv = static_cast<double>(c.num_key_value_heads) * d;
  const double mlp = static_cast<double>(c.intermediate_size);
  const double layers = static_cast<double>(c.num_hidden_layers);
  const double vocab = static_cast<double>(c.vocab_size);
  const double params = layers * (2 * h * q + 2 * h * kv + 3 * h * mlp) + vocab * h;
  const double outputs = layers * (q + 2 * kv + h + 2 * mlp + h) + vocab;  // rows with a scale
  if (weights == "int8") return params + 4 * outputs;
  return params * (weights == "bf16" ? 2 : 4);
}

// GB/s of reading a 1 GiB float32 buffer (at::sum over it, best of 3):
// the memory bandwidth a decode step can hope for.
double read_bandwidth_gbs() {
  const at::Tensor big = at::ones({int64_t{1} << 28});
  double best = 0;
  for (int i = 0; i < 3; ++i) {
    const auto start = Clock::now();
    const double s = big.sum().item<double>();
    best = std::max(best, 4.0 * static_cast<double>(big.numel()) / seconds_since(start) / 1e9);
    if (s < 0) std::puts("");  // keep the sum
  }
  return best;
}

// GFLOP/s of one square float32 matrix product: the ceiling the prefill is compared to.
double gemm_gflops(int64_t n) {
  const at::Tensor a = at::randn({n, n}), b = at::randn({n, n});
  at::mm(a, b);
  double best = 0;
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    at::mm(a, b);
    best = std::max(best, 2.0 * static_cast<double>(n * n * n) / seconds_since(start) / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  vitrine::models::reexec_with_passive_wait_policy(argv);
  CLI::App app{"models/ prefill and decode speed, as the PyTorch peer measures it"};
  std::string model_dir, json_path, batches = "1,8", targets = "q_proj,v_proj", mix = "mixed",
                                    layout = "packed", weights = "f32";
  int threads = 2, prompt_len = 32, new_tokens = 64, prefill_len = 512, lora_r = 8;
  double lora_alpha = 16;
  uint64_t seed = 0;
  app.add_option("--model", model_dir, "Hugging Face model directory")->required();
  app.add_option("--batches", batches, "batch sizes, comma-separated")->capture_default_str();
  app.add_option("--prompt-len", prompt_len)->capture_default_str();
  app.add_option("--new-tokens", new_tokens)->capture_default_str();
  app.add_option("--prefill-len", prefill_len, "tokens of the long prefill")->capture_default_str();
  app.add_option("--lora-r", lora_r)->capture_default_str();
  app.add_option("--lora-alpha", lora_alpha)->capture_default_str();
  app.add_option("--lora-targets", targets)->capture_default_str();
  app.add_option("--adapters", mix,
                 "rows of a batch: mixed (two adapters and base), one (all the same adapter) "
                 "or none")
      ->check(CLI::IsMember({"mixed", "one", "none"}))
      ->capture_default_str();
  app.add_option("--layout", layout,
                 "weights packed for inference (as the daemon loads them) or as the checkpoint "
                 "has them")
      ->check(CLI::IsMember({"packed", "checkpoint"}))
      ->capture_default_str();
  app.add_option("--weights", weights,
                 "the base's format: f32, bf16, int8 (packed layout) or auto (the checkpoint's)")
      ->check(CLI::IsMember({"f32", "bf16", "int8", "auto"}))
      ->capture_default_str();
  app.add_option("--threads", threads)->capture_default_str();
  app.add_option("--seed", seed)->capture_default_str();
  app.add_option("--json", json_path, "append each result as a JSON line to this file");
  CLI11_PARSE(app, argc, argv);

  try {
    vitrine::models::init_runtime({.threads = threads});
    at::manual_seed(seed);
    const auto load_start = Clock::now();
    LlamaForCausalLM model =
        vitrine::models::load_llama(model_dir, "cpu",
                                    layout == "packed" ? vitrine::models::WeightLayout::kPacked
                                                       : vitrine::models::WeightLayout::kCheckpoint,
                                    vitrine::models::parse_base_dtype(weights));
    const double load_s = seconds_since(load_start);
    const std::vector<std::string> target_list = split(targets);
    attach_random_adapters(model, target_list, lora_r, lora_alpha);
    const auto& config = model->config();
    const std::string name = std::filesystem::path(model_dir).filename().string();
    std::vector<nlohmann::ordered_json> results;

    for (const auto& b_text : split(batches)) {
      const int64_t b = std::stoll(b_text);
      const at::Tensor prompts =
          at::randint(0, config.vocab_size, {b, prompt_len}, at::TensorOptions().dtype(at::kLong));
      std::vector<vitrine::models::BatchRequest> requests, warmup;
      for (int64_t i = 0; i < b; ++i) {
        const at::Tensor row = prompts[i].contiguous();
        const int64_t* p = row.data_ptr<int64_t>();
        const int slot = mix == "none"            ? -1
                         : mix == "one" || b == 1 ? 0
                                                  : std::array{0, 1, -1}[i % 3];  // -1: base
        requests.push_back({std::vector<int64_t>(p, p + prompt_len), slot});
        warmup.push_back({std::vector<int64_t>(p, p + 8), slot});
      }
      vitrine::models::GenerationOptions options;  // greedy, no stops: exactly new_tokens
      options.max_new_tokens = 4;
      vitrine::models::generate_batch_ids(model, warmup, options);
      options.max_new_tokens = new_tokens;
      Clock::time_point first_token;
      bool seen_first = false;
      const auto start = Clock::now();
      const auto out = vitrine::models::generate_batch_ids(model, requests, options,
                                                           [&](size_t, int64_t, std::string_view) {
                                                             if (!seen_first) {
                                                               first_token = Clock::now();
                                                               seen_first = true;
                                                             }
                                                             return true;
                                                           });
      const auto end = Clock::now();
      const double prefill_s = std::chrono::duration<double>(first_token - start).count();
      const double decode_s = std::chrono::duration<double>(end - first_token).count();
      const int64_t steps = static_cast<int64_t>(out[0].ids.size()) - 1;
      nlohmann::ordered_json r = {
          {"impl", "vitrine"},
          {"model", name},
          {"mode", "generate"},
          {"batch", b},
          {"adapters", b == 1 && mix == "mixed" ? "one" : mix},
          {"layout", layout},
          {"weights", weights},
          {"prompt_len", prompt_len},
          {"new_tokens", out[0].ids.size()},
          {"prefill_s", prefill_s},
          {"prefill_tokens_per_s", static_cast<double>(b * prompt_len) / prefill_s},
          {"decode_tokens_per_s", static_cast<double>(b * steps) / decode_s},
          {"ms_per_decode_step", 1000 * decode_s / static_cast<double>(steps)},
      };
      r["weight_bytes_per_step"] = weight_bytes_per_step(config, weights);
      r["weight_gbs"] = r["weight_bytes_per_step"].get<double>() / (decode_s / steps) / 1e9;
      results.push_back(r);
      std::printf(
          "generate batch %ld: decode %.1f tokens/s (%.2f ms/step), prefill %d tokens in %.3f s\n",
          static_cast<long>(b), r["decode_tokens_per_s"].get<double>(),
          r["ms_per_decode_step"].get<double>(), prompt_len, prefill_s);
    }

    // One long prefill, with one adapter, logits for the last position only.
    {
      c10::InferenceMode inference;
      const at::Tensor ids =
          at::randint(0, config.vocab_size, {1, prefill_len}, at::TensorOptions().dtype(at::kLong));
      model->forward_last(ids.narrow(1, 0, 16), nullptr, {0});  // warm-up
      double best = 1e30;
      for (int i = 0; i < 3; ++i) {
        const auto start = Clock::now();
        model->forward_last(ids, nullptr, {0});
        best = std::min(best, seconds_since(start));
      }
      const double flops = prefill_flops(config, prefill_len, lora_r, target_list.size());
      const double ceiling = gemm_gflops(1024);
      nlohmann::ordered_json r = {
          {"impl", "vitrine"},
          {"model", name},
          {"mode", "prefill"},
          {"weights", weights},
          {"prefill_len", prefill_len},
          {"prefill_s", best},
          {"prefill_tokens_per_s", static_cast<double>(prefill_len) / best},
          {"gflops", flops / best / 1e9},
          {"gemm_1024_gflops", ceiling},
          {"fraction_of_150", flops / best / 1e9 / 150.0},
      };
      results.push_back(r);
      std::printf(
          "prefill %d tokens: %.3f s, %.0f tokens/s, %.1f GFLOP/s (%.0f%% of 150; one "
          "1024^3 matrix product here: %.1f GFLOP/s)\n",
          prefill_len, best, r["prefill_tokens_per_s"].get<double>(), r["gflops"].get<double>(),
          100 * r["fraction_of_150"].get<double>(), ceiling);
    }
    const double peak_rss = peak_rss_mib();  // before the bandwidth's 1 GiB buffer
    const double bandwidth = read_bandwidth_gbs();
    std::printf("weights %s: %.1f MB per decode step; reading 1 GiB here: %.1f GB/s\n",
                weights.c_str(), weight_bytes_per_step(config, weights) / 1e6, bandwidth);
    for (auto& r : results) {
      r["read_bandwidth_gbs"] = bandwidth;
      r["threads"] = threads;
      r["load_s"] = load_s;
      r["peak_rss_mb"] = peak_rss;
      if (!json_path.empty()) {
        std::ofstream out(json_path, std::ios::app);
        out << r.dump() << "\n";
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "decode_bench: error: %s\n", e.what());
    return 1;
  }
}
