// Benchmark: the projections of a Llama stack alone, in each layout and
// kernel models/ has: BLAS (at::linear) and small_linear on the checkpoint's
// [out, in] float32 weights, packed_linear on float32 panels, and
// packed_linear_bf16 on bfloat16 pairs (the exact path, the vdpbf16ps path
// where the CPU has it), packed_linear_int8 on int8 panels (each build:
// widening, and the VNNI and bf16-dot ones where the CPU has them); then backward-data dX = dY·W,
// BLAS (at::matmul) against packed_linear_bf16_backward_data.
//
// Builds random weights of --layers layers of a model shaped by --hidden and
// --intermediate (q, k, v, o, gate, up, down; 110m's shape by default), so
// that one pass streams them all from memory as a decode step does, then
// times passes of --rows rows through the matrices of each shape, and
// through all of them. Prints milliseconds per pass and GFLOP/s (two per
// multiply-add). --runs runs alternate the kernels, each timing the median
// of --passes passes; the figure is the median of the runs, the range in
// brackets. Then the bf16 paths' error against at::linear (at::matmul) on
// the float32 values of the same bf16 weights, relative to the reference:
// the largest error over the largest |y|, and the mean error over the mean
// |y|. Not a test: figures depend on the machine.
//
// Usage: linear_bench [--rows 1,8,512] [--hidden 768] [--intermediate 2048] [--layers 12]
//        [--threads 2] [--passes 10] [--runs 1] [--fallbacks]
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "models/kernels/packed_linear.h"
#include "models/kernels/packed_linear_bf16.h"
#include "models/kernels/packed_linear_int8.h"
#include "models/kernels/small_linear.h"
#include "models/runtime.h"

namespace {

using Clock = std::chrono::steady_clock;
using vitrine::models::Bf16Path;
using vitrine::models::Int8Path;
using vitrine::models::PackedWeight;
using vitrine::models::PackedWeightBf16;

struct Projection {
  at::Tensor plain;  // [out, in] float32
  PackedWeight packed;
  PackedWeightBf16 bf16;
  vitrine::models::PackedWeightInt8 int8;
};

// The matrices of one shape (all of them: "all").
struct ShapeGroup {
  std::string name;
  std::vector<const Projection*> members;
  double multiply_adds = 0;  // per row, over the members
};

// A kernel applied to one projection; `backward` ones take dY [rows, out].
struct Kernel {
  std::string name;
  bool backward = false;
  std::function<void(const Projection&, const at::Tensor&)> run;
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

std::vector<Projection> build_stack(int64_t hidden, int64_t intermediate, int64_t layers) {
  std::vector<Projection> stack;
  for (int64_t l = 0; l < layers; ++l) {
    const std::vector<std::pair<int64_t, int64_t>> shapes = {
        {hidden, hidden},       {hidden, hidden},       {hidden, hidden},      {hidden, hidden},
        {intermediate, hidden}, {intermediate, hidden}, {hidden, intermediate}};
    for (const auto& [out, in] : shapes) {
      const at::Tensor w = at::randn({out, in}) * 0.02;
      stack.push_back({w, vitrine::models::pack_weight(w), vitrine::models::pack_weight_bf16(w),
                       vitrine::models::quantize_weight_int8(w)});
    }
  }
  return stack;
}

// One group per distinct shape, in the order of a layer, then "all".
std::vector<ShapeGroup> group_by_shape(const std::vector<Projection>& stack) {
  std::vector<ShapeGroup> groups;
  ShapeGroup all{"all", {}, 0};
  for (const Projection& p : stack) {
    const std::string name =
        std::to_string(p.plain.size(0)) + "x" + std::to_string(p.plain.size(1));
    auto it = std::find_if(groups.begin(), groups.end(), [&](auto& g) { return g.name == name; });
    if (it == groups.end()) it = groups.insert(groups.end(), ShapeGroup{name, {}, 0});
    for (ShapeGroup* g : {&*it, &all}) {
      g->members.push_back(&p);
      g->multiply_adds += static_cast<double>(p.plain.numel());
    }
  }
  groups.push_back(all);
  return groups;
}

std::vector<Kernel> kernels_for(int64_t rows, bool fallbacks) {
  namespace m = vitrine::models;
  std::vector<Kernel> kernels = {
      {"BLAS (at::linear), f32 [out, in]", false,
       [](const Projection& p, const at::Tensor& x) { at::linear(x, p.plain); }},
      {"packed_linear, f32 panels", false,
       [](const Projection& p, const at::Tensor& x) { m::packed_linear(x, p.packed); }},
      {"packed_linear_bf16 exact", false,
       [](const Projection& p, const at::Tensor& x) {
         m::packed_linear_bf16(x, p.bf16, {}, Bf16Path::kExact);
       }},
  };
  if (rows <= m::kSmallLinearMaxRows) {
    kernels.insert(kernels.begin() + 1, {"small_linear, f32 [out, in]", false,
                                         [](const Projection& p, const at::Tensor& x) {
                                           m::small_linear(x, p.plain, {});
                                         }});
  }
  if (m::bf16_path_available(Bf16Path::kDotAvx512Bf16)) {
    kernels.push_back({"packed_linear_bf16 fast (vdpbf16ps)", false,
                       [](const Projection& p, const at::Tensor& x) {
                         m::packed_linear_bf16(x, p.bf16, {}, Bf16Path::kDotAvx512Bf16);
                       }});
  }
  for (const Int8Path path : {Int8Path::kWidenAvx512, Int8Path::kVnniAvx512,
                              Int8Path::kDotAvx512Bf16, Int8Path::kWidenAvx2}) {
    if (!m::int8_path_available(path) || (path == Int8Path::kWidenAvx2 && !fallbacks)) continue;
    kernels.push_back({"packed_linear_int8 " + std::string(m::int8_path_name(path)), false,
                       [path](const Projection& p, const at::Tensor& x) {
                         m::packed_linear_int8(x, p.int8, {}, path);
                       }});
  }
  if (fallbacks && m::bf16_path_available(Bf16Path::kWidenAvx2)) {
    kernels.push_back({"packed_linear_bf16 widen-avx2 (fallback)", false,
                       [](const Projection& p, const at::Tensor& x) {
                         m::packed_linear_bf16(x, p.bf16, {}, Bf16Path::kWidenAvx2);
                       }});
  }
  kernels.push_back({"backward-data: BLAS (at::matmul), f32 [out, in]", true,
                     [](const Projection& p, const at::Tensor& dy) { at::matmul(dy, p.plain); }});
  kernels.push_back({"backward-data: packed_linear_bf16 exact", true,
                     [](const Projection& p, const at::Tensor& dy) {
                       m::packed_linear_bf16_backward_data(dy, p.bf16, Bf16Path::kExact);
                     }});
  if (fallbacks && m::bf16_path_available(Bf16Path::kWidenAvx2)) {
    kernels.push_back({"backward-data: packed_linear_bf16 widen-avx2 (fallback)", true,
                       [](const Projection& p, const at::Tensor& dy) {
                         m::packed_linear_bf16_backward_data(dy, p.bf16, Bf16Path::kWidenAvx2);
                       }});
  }
  return kernels;
}

// Random rows for every width the stack takes or gives: [rows, width].
class Inputs {
 public:
  explicit Inputs(int64_t rows) : rows_(rows) {}
  const at::Tensor& of_width(int64_t width) {
    auto it = inputs_.find(width);
    if (it == inputs_.end()) it = inputs_.emplace(width, at::randn({rows_, width})).first;
    return it->second;
  }

 private:
  int64_t rows_;
  std::map<int64_t, at::Tensor> inputs_;
};

// "median (min to max)" of the runs' figures, or the one figure of one run.
std::string median_and_range(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const double median = v[v.size() / 2];
  const int digits = median < 10 ? 2 : median < 100 ? 1 : 0;
  if (v.size() == 1) return fmt::format("{:.{}f}", median, digits);
  return fmt::format("{:.{}f} ({:.{}f} to {:.{}f})", median, digits, v.front(), digits, v.back(),
                     digits);
}

// ms[kernel][group][run]: each run times every kernel on every shape in
// turn, so drifts of this noisy machine spread over all of them.
using Timings = std::vector<std::vector<std::vector<double>>>;

Timings time_kernels(int64_t rows, const std::vector<ShapeGroup>& groups,
                     const std::vector<Kernel>& kernels, int passes, int runs) {
  Inputs inputs(rows);
  Timings ms(kernels.size(), std::vector<std::vector<double>>(groups.size()));
  for (int run = 0; run < runs; ++run) {
    for (size_t k = 0; k < kernels.size(); ++k) {
      double all = 0;
      for (size_t g = 0; g + 1 < groups.size(); ++g) {
        const double t = median_ms(passes, [&] {
          for (const Projection* p : groups[g].members) {
            const int64_t width = p->plain.size(kernels[k].backward ? 0 : 1);
            kernels[k].run(*p, inputs.of_width(width));
          }
        });
        ms[k][g].push_back(t);
        all += t;
      }
      ms[k].back().push_back(all);
    }
  }
  return ms;
}

// One table per row count: GFLOP/s by kernel and shape, and the whole
// stack's milliseconds per pass.
void print_timings(int64_t rows, const std::vector<ShapeGroup>& groups,
                   const std::vector<Kernel>& kernels, const Timings& ms) {
  std::printf("\n%ld rows: GFLOP/s by shape (out x in), and ms per pass over all\n\n| kernel |",
              static_cast<long>(rows));
  for (const ShapeGroup& g : groups) std::printf(" %s |", g.name.c_str());
  std::printf(" ms per pass, all |\n|---|");
  for (size_t g = 0; g <= groups.size(); ++g) std::printf("---|");
  std::printf("\n");
  for (size_t k = 0; k < kernels.size(); ++k) {
    std::printf("| %s |", kernels[k].name.c_str());
    for (size_t g = 0; g < groups.size(); ++g) {
      std::vector<double> gflops;
      for (const double t : ms[k][g]) {
        gflops.push_back(2 * groups[g].multiply_adds * static_cast<double>(rows) / t / 1e6);
      }
      std::printf(" %s |", median_and_range(gflops).c_str());
    }
    std::printf(" %s |\n", median_and_range(ms[k].back()).c_str());
  }
}

// "max error / max |reference|, mean error / mean |reference|".
std::string relative_error(const at::Tensor& y, const at::Tensor& reference) {
  const at::Tensor error = (y - reference).abs();
  return fmt::format("{:.2e}, {:.2e}",
                     error.max().item<double>() / reference.abs().max().item<double>(),
                     error.mean().item<double>() / reference.abs().mean().item<double>());
}

// The bf16 paths against BLAS on the float32 values of the same bf16
// weights (the first matrix of each shape).
void print_errors(const std::vector<int64_t>& row_counts, const std::vector<ShapeGroup>& groups) {
  namespace m = vitrine::models;
  const bool fast = m::bf16_path_available(Bf16Path::kDotAvx512Bf16);
  std::printf(
      "\nError against at::linear / at::matmul on the bf16 weights' float32 values "
      "(max / max |y|, mean / mean |y|)\n\n| rows | shape | forward exact | forward fast | "
      "backward-data exact |\n|---|---|---|---|---|\n");
  for (const int64_t rows : row_counts) {
    for (size_t g = 0; g + 1 < groups.size(); ++g) {
      const Projection& p = *groups[g].members.front();
      const at::Tensor w = m::unpack_weight_bf16(p.bf16).to(at::kFloat);  // [out, in]
      const at::Tensor x = at::randn({rows, w.size(1)}), dy = at::randn({rows, w.size(0)});
      const at::Tensor y = at::linear(x, w);
      std::printf(
          "| %ld | %s | %s | %s | %s |\n", static_cast<long>(rows), groups[g].name.c_str(),
          relative_error(m::packed_linear_bf16(x, p.bf16), y).c_str(),
          fast ? relative_error(m::packed_linear_bf16(x, p.bf16, {}, Bf16Path::kFast), y).c_str()
               : "-",
          relative_error(m::packed_linear_bf16_backward_data(dy, p.bf16), at::matmul(dy, w))
              .c_str());
    }
  }
  // int8: against the float32 weights themselves (the quantization's error)
  // and against the dequantized ones (the kernels' own).
  std::printf(
      "\nint8 (max / max |y|, mean / mean |y|): against at::linear on the float32 weights, and on "
      "the dequantized ones\n\n| rows | shape | int8 vs f32 weights | widen vs dequantized | "
      "auto vs dequantized |\n|---|---|---|---|---|\n");
  for (const int64_t rows : row_counts) {
    for (size_t g = 0; g + 1 < groups.size(); ++g) {
      const Projection& p = *groups[g].members.front();
      const at::Tensor x = at::randn({rows, p.plain.size(1)});
      const at::Tensor y = at::linear(x, m::dequantize_weight_int8(p.int8));
      const at::Tensor got = m::packed_linear_int8(x, p.int8);
      const Int8Path widen = m::cpu_has_avx512() ? Int8Path::kWidenAvx512 : Int8Path::kWidenAvx2;
      std::printf("| %ld | %s | %s | %s | %s |\n", static_cast<long>(rows), groups[g].name.c_str(),
                  relative_error(got, at::linear(x, p.plain)).c_str(),
                  relative_error(m::packed_linear_int8(x, p.int8, {}, widen), y).c_str(),
                  relative_error(got, y).c_str());
    }
  }
}

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> values;
  std::stringstream list(text);
  std::string item;
  while (std::getline(list, item, ',')) values.push_back(std::stoll(item));
  return values;
}

}  // namespace

int main(int argc, char** argv) {
  vitrine::models::reexec_with_passive_wait_policy(argv);
  CLI::App app{"a Llama stack's projections in each layout and kernel"};
  std::string rows_list = "1,8,512";
  int64_t hidden = 768, intermediate = 2048, layers = 12;
  int threads = 2, passes = 10, runs = 1;
  bool fallbacks = false;
  app.add_option("--rows", rows_list, "rows per product, comma-separated")->capture_default_str();
  app.add_option("--hidden", hidden)->capture_default_str();
  app.add_option("--intermediate", intermediate)->capture_default_str();
  app.add_option("--layers", layers)->capture_default_str();
  app.add_option("--threads", threads)->capture_default_str();
  app.add_option("--passes", passes, "timed passes per run (their median counts)")
      ->capture_default_str();
  app.add_option("--runs", runs, "runs, kernels alternating (median and range printed)")
      ->capture_default_str();
  app.add_flag("--fallbacks", fallbacks, "also time the bf16 kernels' AVX2 build");
  CLI11_PARSE(app, argc, argv);

  vitrine::models::init_runtime({.threads = threads});
  c10::InferenceMode inference;
  at::manual_seed(0);
  const std::vector<Projection> stack = build_stack(hidden, intermediate, layers);
  const std::vector<ShapeGroup> groups = group_by_shape(stack);
  std::printf(
      "%ld layers, hidden %ld, intermediate %ld, %d threads, AVX-512 %s, AVX512_BF16 %s: %.0f MB "
      "of float32 weights; %d runs of %d passes\n",
      static_cast<long>(layers), static_cast<long>(hidden), static_cast<long>(intermediate),
      threads, vitrine::models::cpu_has_avx512() ? "yes" : "no",
      vitrine::models::cpu_has_avx512_bf16() ? "yes" : "no", groups.back().multiply_adds * 4 / 1e6,
      runs, passes);
  const std::vector<int64_t> row_counts = parse_list(rows_list);
  for (const int64_t rows : row_counts) {
    const std::vector<Kernel> kernels = kernels_for(rows, fallbacks);
    print_timings(rows, groups, kernels, time_kernels(rows, groups, kernels, passes, runs));
    std::fflush(stdout);
  }
  print_errors(row_counts, groups);
  return 0;
}
