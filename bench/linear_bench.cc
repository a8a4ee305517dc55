// Benchmark: the projections of a Llama stack alone, in each layout and
// kernel models/ has: BLAS (at::linear) and small_linear on the checkpoint's
// [out, in] weights, packed_linear on panels.
//
// Builds random weights of --layers layers of a model shaped by --hidden and
// --intermediate (q, k, v, o, gate, up, down; 110m's shape by default), so
// that one pass streams them all from memory as a decode step does, then
// times passes of --rows rows through every matrix. Prints milliseconds per
// pass and GFLOP/s (two per multiply-add). Not a test: figures depend on the
// machine.
//
// Usage: linear_bench [--rows 1,8,512] [--hidden 768] [--intermediate 2048] [--layers 12]
//        [--threads 2] [--passes 20]
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "models/kernels/packed_linear.h"
#include "models/kernels/small_linear.h"
#include "models/runtime.h"

namespace {

using Clock = std::chrono::steady_clock;
using vitrine::models::PackedWeight;

struct Projection {
  at::Tensor plain;  // [out, in]
  PackedWeight packed;
};

// The median of `passes` timed runs of `pass`, in milliseconds.
double median_ms(int passes, const std::function<void()>& pass) {
  pass();  // warm-up
  std::vector<double> ms;
  for (int i = 0; i < passes; ++i) {
    const auto start = Clock::now();
    pass();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::nth_element(ms.begin(), ms.begin() + passes / 2, ms.end());
  return ms[static_cast<size_t>(passes / 2)];
}

}  // namespace

int main(int argc, char** argv) {
  vitrine::models::reexec_with_passive_wait_policy(argv);
  CLI::App app{"a Llama stack's projections in each layout and kernel"};
  std::string rows_list = "1,8,512";
  int64_t hidden = 768, intermediate = 2048, layers = 12;
  int threads = 2, passes = 20;
  app.add_option("--rows", rows_list, "rows per product, comma-separated")->capture_default_str();
  app.add_option("--hidden", hidden)->capture_default_str();
  app.add_option("--intermediate", intermediate)->capture_default_str();
  app.add_option("--layers", layers)->capture_default_str();
  app.add_option("--threads", threads)->capture_default_str();
  app.add_option("--passes", passes, "timed passes (the median is printed)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  vitrine::models::init_runtime({.threads = threads});
  c10::InferenceMode inference;
  at::manual_seed(0);
  std::vector<Projection> stack;
  double multiply_adds_per_row = 0;
  for (int64_t l = 0; l < layers; ++l) {
    const std::vector<std::pair<int64_t, int64_t>> shapes = {
        {hidden, hidden},       {hidden, hidden},       {hidden, hidden},      {hidden, hidden},
        {intermediate, hidden}, {intermediate, hidden}, {hidden, intermediate}};
    for (const auto& [out, in] : shapes) {
      const at::Tensor w = at::randn({out, in}) * 0.02;
      stack.push_back({w, vitrine::models::pack_weight(w)});
      multiply_adds_per_row += static_cast<double>(out * in);
    }
  }
  std::printf(
      "%ld layers, hidden %ld, intermediate %ld, %d threads, AVX-512 %s: %.0f MB of weights\n",
      static_cast<long>(layers), static_cast<long>(hidden), static_cast<long>(intermediate),
      threads, vitrine::models::cpu_has_avx512() ? "yes" : "no", multiply_adds_per_row * 4 / 1e6);
  std::printf("| rows | kernel | ms per pass | GFLOP/s |\n| --- | --- | --- | --- |\n");
  std::stringstream list(rows_list);
  std::string item;
  while (std::getline(list, item, ',')) {
    const int64_t rows = std::stoll(item);
    const at::Tensor x8 = at::randn({rows, intermediate});
    const at::Tensor xh = x8.narrow(1, 0, hidden).contiguous();
    const auto input = [&](const at::Tensor& w) { return w.size(1) == hidden ? xh : x8; };
    std::vector<std::pair<std::string, std::function<void()>>> kernels = {
        {"BLAS (at::linear), [out, in]",
         [&] {
           for (const auto& p : stack) at::linear(input(p.plain), p.plain);
         }},
        {"packed_linear, panels",
         [&] {
           for (const auto& p : stack) vitrine::models::packed_linear(input(p.plain), p.packed);
         }},
    };
    if (rows <= vitrine::models::kSmallLinearMaxRows) {
      kernels.insert(kernels.begin() + 1, {"small_linear, [out, in]", [&] {
                                             for (const auto& p : stack) {
                                               vitrine::models::small_linear(input(p.plain),
                                                                             p.plain, {});
                                             }
                                           }});
    }
    for (const auto& [name, pass] : kernels) {
      const double ms = median_ms(passes, pass);
      std::printf("| %ld | %s | %.2f | %.1f |\n", static_cast<long>(rows), name.c_str(), ms,
                  2 * multiply_adds_per_row * static_cast<double>(rows) / ms / 1e6);
    }
  }
  return 0;
}
