// train_bench: LoRA training throughput of vitrine on a Hugging Face model
// directory, measured the way ../shared/bench/torch_lora_baseline.py
// measures its plain-PyTorch peer (bench/train_bench.py runs both in turn):
// random token ids, --batch sequences of --seq tokens, next-token loss over
// the whole vocabulary, LoRA r/alpha on --targets, every base weight frozen,
// one AdamW step per batch; --warmup untimed steps, then --steps timed ones.
//
//   train_bench --model DIR [--seq 512] [--batch 1] [--steps 10] [--warmup 2]
//               [--threads 2] [--lora-r 8] [--lora-alpha 16]
//               [--targets q_proj,v_proj] [--base-dtype auto|bf16|f32]
//               [--checkpointing auto|always|never] [--bf16-compute] [--json FILE]
//               [--trace FILE]
//
//   train_bench --ceiling [--threads 2] [--json FILE]
//
// measures instead the machine's arithmetic ceilings on --threads threads:
// register-only loops of float32 FMA and of vdpbf16ps (where the CPU has
// AVX512_BF16), in GFLOP/s (two per multiply-add), which the training
// figures are set against.
//
// Prints one line of figures, and appends it as JSON to --json: tokens/s,
// ms per step (mean and best) and the process's CPU time per step (on a
// loaded machine closer to the work than the wall time), loss of the first
// and last step, the process's peak resident memory (getrusage), which
// includes loading (the peak of loading alone beside it), and the memory
// estimate `vitrine train` prints and plans with
// (training/memory_estimate.h); --checkpointing auto decides as `vitrine
// train` does, on the memory free at the start. --trace runs one more step
// after the timed ones and writes its operators (libtorch's profiler, with
// vitrine's own kernels and layers as named scopes) as a Chrome trace;
// bench/step_breakdown.py sums it per part of the step.
#include <immintrin.h>
#include <sys/resource.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "models/kernels/packed_linear_bf16.h"
#include "models/llama.h"
#include "models/runtime.h"
#include "training/lora_trainer.h"
#include "training/memory_estimate.h"
#include "training/trainable_adapter.h"

namespace {

using namespace vitrine;
using Clock = std::chrono::steady_clock;

// Independent accumulators per loop: enough to cover the FMA latency on
// two ports.
constexpr int kChains = 12;

// `iterations` rounds of kChains float32 FMAs of 16 lanes; returns a sum so
// the loop is not optimised away.
__attribute__((target("avx512f"))) float fma_rounds_avx512(int64_t iterations) {
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i) {
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  }
  float sum = 0;
  for (int j = 0; j < kChains; ++j) sum += _mm512_reduce_add_ps(acc[j]);
  return sum;
}

__attribute__((target("avx2,fma"))) float fma_rounds_avx2(int64_t iterations) {
  __m256 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm256_set1_ps(static_cast<float>(j));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i) {
    for (int j = 0; j < kChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
  }
  alignas(32) float lanes[8];
  float sum = 0;
  for (int j = 0; j < kChains; ++j) {
    _mm256_store_ps(lanes, acc[j]);
    for (const float v : lanes) sum += v;
  }
  return sum;
}

// kChains vdpbf16ps of 16 lanes (32 multiply-adds each) per round.
__attribute__((target("avx512f,avx512bf16"))) float dot_rounds_avx512bf16(int64_t iterations) {
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80),
                 b = (__m512bh)_mm512_set1_epi32(0x33003300);
  for (int64_t i = 0; i < iterations; ++i) {
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  }
  float sum = 0;
  for (int j = 0; j < kChains; ++j) sum += _mm512_reduce_add_ps(acc[j]);
  return sum;
}

// GFLOP/s of `rounds` (flops per round given) on `threads` threads at once,
// the best of 5 runs of about 0.3 s.
double ceiling(float (*rounds)(int64_t), double flops_per_round, int threads) {
  constexpr int64_t kIterations = 20'000'000;
  double best = 0;
  for (int run = 0; run < 5; ++run) {
    std::atomic<float> sink{0};
    const Clock::time_point start = Clock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&] { sink.store(sink.load() + rounds(kIterations)); });
    }
    for (auto& w : workers) w.join();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::max(best, flops_per_round * kIterations * threads / seconds / 1e9);
  }
  return best;
}

nlohmann::json ceilings(int threads) {
  nlohmann::json r = {{"program", "ceiling"}, {"threads", threads}};
  if (models::cpu_has_avx512()) {
    r["f32_gflops"] = ceiling(fma_rounds_avx512, kChains * 16 * 2, threads);
  } else if (models::cpu_has_avx2()) {
    r["f32_gflops"] = ceiling(fma_rounds_avx2, kChains * 8 * 2, threads);
  }
  if (models::cpu_has_avx512_bf16()) {
    r["bf16_gflops"] = ceiling(dot_rounds_avx512bf16, kChains * 32 * 2, threads);
  }
  return r;
}

struct Args {
  std::string model, json, trace, base_dtype = "auto", checkpointing = "auto";
  std::vector<std::string> targets = {"q_proj", "v_proj"};
  int64_t seq = 512, batch = 1, steps = 10, warmup = 2, lora_r = 8;
  int threads = 2;
  bool bf16_compute = false;
  double lora_alpha = 16;
};

// CPU time of the whole process so far (every thread), in ms: on a loaded
// machine, closer to the work a step does than its wall time.
double cpu_ms() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto ms = [](const timeval& t) { return 1e3 * t.tv_sec + 1e-3 * t.tv_usec; };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // kB on Linux
}

// A trainer on `model` with a fresh LoRA adapter in slot 0.
training::LoraTrainer make_trainer(models::LlamaForCausalLM& model, const Args& a) {
  models::PeftAdapterConfig peft;
  peft.r = a.lora_r;
  peft.lora_alpha = a.lora_alpha;
  peft.target_modules = a.targets;
  training::OptimizerConfig optimizer;
  optimizer.schedule = "constant";
  return training::LoraTrainer(
      model, training::make_trainable(model, training::init_lora_adapter(model, peft, 0), 0),
      optimizer);
}

nlohmann::json run(const Args& a) {
  models::init_runtime({.threads = a.threads, .device = "cpu"});
  const models::BaseDtype dtype =
      models::resolve_base_dtype(models::parse_base_dtype(a.base_dtype), a.model, "cpu");
  const training::TrainingShape shape{
      .batch_size = a.batch, .seq_len = a.seq, .rank = a.lora_r, .target_modules = a.targets};
  const training::MemoryEstimate estimate = training::plan_training_memory(
      models::load_llama_config(std::filesystem::path(a.model) / "config.json"), dtype, shape,
      training::parse_checkpointing(a.checkpointing), training::available_memory(), "train_bench");
  models::LlamaForCausalLM model =
      models::load_llama(a.model, "cpu", models::WeightLayout::kCheckpoint, dtype);
  const double loaded_rss_mb = peak_rss_mb();  // the peak of loading alone
  model->set_activation_checkpointing(estimate.checkpointing);
  if (a.bf16_compute) model->set_bf16_path(models::Bf16Path::kFast);
  training::LoraTrainer trainer = make_trainer(model, a);
  const int64_t vocab = model->config().vocab_size;
  at::manual_seed(0);
  std::vector<double> ms;
  double cpu_total = 0;
  double first_loss = 0, last_loss = 0;
  const int64_t timed_end = a.warmup + a.steps;
  // With --trace, one more step under the profiler after the timed ones.
  for (int64_t i = 0; i < timed_end + (a.trace.empty() ? 0 : 1); ++i) {
    const at::Tensor ids = at::randint(vocab, {a.batch, a.seq}, at::kLong);
    std::optional<torch::autograd::profiler::RecordProfile> trace;
    if (i == timed_end) trace.emplace(a.trace);
    const Clock::time_point start = Clock::now();
    const double cpu_start = cpu_ms();
    const training::StepResult r = trainer.step({{.ids = ids, .labels = ids}});
    if (i >= a.warmup && i < timed_end) {
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      cpu_total += cpu_ms() - cpu_start;
    }
    if (i == 0) first_loss = r.loss;
    if (i < timed_end) last_loss = r.loss;
  }
  double total = 0, best = ms.empty() ? 0 : ms.front();
  for (const double m : ms) total += m, best = std::min(best, m);
  const double mean = ms.empty() ? 0 : total / static_cast<double>(ms.size());
  return {{"program", "vitrine"},
          {"model", a.model},
          {"seq", a.seq},
          {"batch", a.batch},
          {"steps", a.steps},
          {"threads", a.threads},
          {"tokens_per_s", mean > 0 ? 1000.0 * static_cast<double>(a.batch * a.seq) / mean : 0},
          {"ms_per_step", mean},
          {"best_ms_per_step", best},
          {"cpu_ms_per_step", ms.empty() ? 0 : cpu_total / static_cast<double>(ms.size())},
          {"loss_first", first_loss},
          {"loss_last", last_loss},
          {"peak_rss_mb", peak_rss_mb()},
          {"peak_rss_loading_mb", loaded_rss_mb},
          {"base_dtype", models::base_dtype_name(dtype)},
          {"checkpointing", estimate.checkpointing},
          {"bf16_compute", a.bf16_compute},
          {"estimate_mb", static_cast<double>(estimate.total()) / (1 << 20)}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"train_bench: LoRA training tokens/s of vitrine on random token ids"};
  Args a;
  bool ceiling_only = false;
  app.add_flag("--ceiling", ceiling_only, "measure the machine's f32 and bf16 arithmetic ceilings");
  app.add_option("--model", a.model, "Hugging Face model directory");
  app.add_option("--seq", a.seq, "tokens per sequence")->check(CLI::PositiveNumber);
  app.add_option("--batch", a.batch, "sequences per step")->check(CLI::PositiveNumber);
  app.add_option("--steps", a.steps, "timed steps")->check(CLI::PositiveNumber);
  app.add_option("--warmup", a.warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--threads", a.threads, "torch and kernel threads")->check(CLI::PositiveNumber);
  app.add_option("--lora-r", a.lora_r, "LoRA rank")->check(CLI::PositiveNumber);
  app.add_option("--lora-alpha", a.lora_alpha, "LoRA alpha");
  app.add_option("--targets", a.targets, "LoRA target modules, comma-separated")->delimiter(',');
  app.add_option("--base-dtype", a.base_dtype, "the frozen base: auto, bf16 or f32")
      ->check(CLI::IsMember({"auto", "bf16", "f32"}));
  app.add_option("--checkpointing", a.checkpointing,
                 "activation checkpointing: auto, always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  app.add_flag("--bf16-compute", a.bf16_compute,
               "a bf16 base's products on bf16 activations and gradients (vdpbf16ps)");
  app.add_option("--json", a.json, "append the figures as one JSON line to this file");
  app.add_option("--trace", a.trace,
                 "run one more step and write its operators as a Chrome trace here");
  CLI11_PARSE(app, argc, argv);
  try {
    if (ceiling_only) {
      const nlohmann::json r = ceilings(a.threads);
      std::printf("ceiling on %d threads: f32 FMA %.0f GFLOP/s, bf16 vdpbf16ps %.0f GFLOP/s\n",
                  a.threads, r.value("f32_gflops", 0.0), r.value("bf16_gflops", 0.0));
      if (!a.json.empty()) std::ofstream(a.json, std::ios::app) << r.dump() << "\n";
      return 0;
    }
    if (a.model.empty()) throw std::invalid_argument("--model is required (or --ceiling)");
    const nlohmann::json r = run(a);
    std::printf(
        "train seq %lld batch %lld, base %s%s%s: %.1f tokens/s, %.1f ms/step (best %.1f), "
        "CPU %.1f ms/step, loss %.3f -> %.3f, peak RSS %.0f MB (loading %.0f; estimate %.0f MB)\n",
        static_cast<long long>(a.seq), static_cast<long long>(a.batch),
        r["base_dtype"].get<std::string>().c_str(),
        r["checkpointing"].get<bool>() ? ", checkpointed" : "",
        r["bf16_compute"].get<bool>() ? ", bf16 compute" : "", r["tokens_per_s"].get<double>(),
        r["ms_per_step"].get<double>(), r["best_ms_per_step"].get<double>(),
        r["cpu_ms_per_step"].get<double>(), r["loss_first"].get<double>(),
        r["loss_last"].get<double>(), r["peak_rss_mb"].get<double>(),
        r["peak_rss_loading_mb"].get<double>(), r["estimate_mb"].get<double>());
    if (!a.json.empty()) std::ofstream(a.json, std::ios::app) << r.dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_bench: %s\n", e.what());
    return 1;
  }
}
