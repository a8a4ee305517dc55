#include "models/kernels/packed_linear.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "models/kernels/kernel_threads.h"
#include "models/kernels/simd_vec8.h"
#include "models/runtime.h"

namespace vitrine::models {
namespace {

// Sixteen floats: one panel row. GCC lowers it to one AVX-512 register, two
// AVX2 registers or four SSE registers, by the target of the function it is
// inlined into.
typedef float Vec16 __attribute__((vector_size(64), aligned(4), may_alias));

__attribute__((always_inline)) inline Vec16 load16(const float* p) {
  return *reinterpret_cast<const Vec16*>(p);
}
__attribute__((always_inline)) inline void store16(float* p, Vec16 v) {
  *reinterpret_cast<Vec16*>(p) = v;
}

// Input features per pass over a tile: the panels' share of a pass stays in
// cache while the blocks of rows go by, and the partial sums of each pass
// are added into y (blocked summation, so long rows round about as BLAS's).
constexpr int64_t kPass = 512;

// Panel rows (cache lines) fetched ahead of use. A decode step's products
// are too short for the hardware prefetcher to reach full speed on its own:
// on a 110m-shaped batch-8 step, 24 lines ahead measured 28.1 -> 24.6 ms
// (16 to 32 about as good, 64 and more worse).
constexpr int64_t kPrefetchAhead = 24;

// Where one product's operands are: x rows of stride in, panels of stride
// in·16, y rows of stride out.
struct Operands {
  const float* x;
  const float* panels;
  float* y;
  int64_t in, out;
};

// Outputs of panels [p0, p0 + P) for rows [r0, r0 + R), input features
// [k0, k1): P·R vector accumulators, one vector load per panel and one
// broadcast per row for each feature. The first pass stores into y, later
// ones add to it. Outputs past `out` (the zero padding of the last panel)
// are not stored.
template <int P, int R>
__attribute__((always_inline)) inline void tile(const Operands& op, int64_t p0, int64_t r0,
                                                int64_t k0, int64_t k1) {
  Vec16 acc[P][R] = {};
  const float* x = op.x + r0 * op.in;
  const float* w = op.panels + p0 * op.in * kPanelWidth;
  for (int64_t k = k0; k < k1; ++k) {
    Vec16 wv[P];
    for (int p = 0; p < P; ++p) {
      __builtin_prefetch(w + (p * op.in + k + kPrefetchAhead) * kPanelWidth);
      wv[p] = load16(w + (p * op.in + k) * kPanelWidth);
    }
    for (int r = 0; r < R; ++r) {
      const float xv = x[r * op.in + k];
      for (int p = 0; p < P; ++p) acc[p][r] += wv[p] * xv;
    }
  }
  for (int r = 0; r < R; ++r) {
    float* y = op.y + (r0 + r) * op.out;
    for (int p = 0; p < P; ++p) {
      const int64_t o = (p0 + p) * kPanelWidth;
      if (o + kPanelWidth <= op.out) {
        store16(y + o, k0 == 0 ? acc[p][r] : load16(y + o) + acc[p][r]);
      } else {
        for (int64_t j = 0; o + j < op.out; ++j) y[o + j] = (k0 == 0 ? 0 : y[o + j]) + acc[p][r][j];
      }
    }
  }
}

// tile<P, R> for R from 1 to kRows, R chosen at run time (the rows left
// over after the full blocks).
template <int P, int R>
__attribute__((always_inline)) inline void tile_rows(const Operands& op, int64_t p0, int64_t r0,
                                                     int64_t rows, int64_t k0, int64_t k1) {
  if constexpr (R > 1) {
    if (rows < R) return tile_rows<P, R - 1>(op, p0, r0, rows, k0, k1);
  }
  tile<P, R>(op, p0, r0, k0, k1);
}

// Panels [begin, end) for every row: each pass of kPass features runs over
// all blocks of R rows, groups of P panels at a time, then single panels.
template <int P, int R>
__attribute__((always_inline)) inline void panels_times_rows(const Operands& op, int64_t rows,
                                                             int64_t begin, int64_t end) {
  for (int64_t k0 = 0; k0 < op.in; k0 += kPass) {
    const int64_t k1 = std::min(op.in, k0 + kPass);
    int64_t p = begin;
    for (; p + P <= end; p += P) {
      int64_t r = 0;
      for (; r + R <= rows; r += R) tile<P, R>(op, p, r, k0, k1);
      if (r < rows) tile_rows<P, R - 1>(op, p, r, rows - r, k0, k1);
    }
    for (; p < end; ++p) {
      int64_t r = 0;
      for (; r + R <= rows; r += R) tile<1, R>(op, p, r, k0, k1);
      if (r < rows) tile_rows<1, R - 1>(op, p, r, rows - r, k0, k1);
    }
  }
}

// One build per instruction set, each with the tile that fills its
// registers without spilling: AVX-512 has 32 of 16 floats (3 × 8
// accumulators, 3 panel rows, a broadcast), AVX2 16 of 8 floats (a panel
// row is two: 1 × 6 rows take 12, plus 2 and 1), SSE 16 of 4 floats.
constexpr int kAvx512Panels = 3, kAvx512Rows = 8;
constexpr int kAvx2Panels = 1, kAvx2Rows = 6;
constexpr int kBaselinePanels = 1, kBaselineRows = 2;

__attribute__((target("avx512f,avx512vl,avx2,fma"), flatten)) void panels_times_rows_avx512(
    const Operands& op, int64_t rows, int64_t begin, int64_t end) {
  panels_times_rows<kAvx512Panels, kAvx512Rows>(op, rows, begin, end);
}

VITRINE_AVX2 void panels_times_rows_avx2(const Operands& op, int64_t rows, int64_t begin,
                                         int64_t end) {
  panels_times_rows<kAvx2Panels, kAvx2Rows>(op, rows, begin, end);
}

__attribute__((flatten)) void panels_times_rows_baseline(const Operands& op, int64_t rows,
                                                         int64_t begin, int64_t end) {
  panels_times_rows<kBaselinePanels, kBaselineRows>(op, rows, begin, end);
}

int64_t panel_count(int64_t out_features) {
  return (out_features + kPanelWidth - 1) / kPanelWidth;
}

}  // namespace

bool packing_applies(const at::Tensor& w) {
  return w.defined() && w.dim() == 2 && w.device().is_cpu() && w.scalar_type() == at::kFloat;
}

int64_t packed_numel(int64_t out_features, int64_t in_features) {
  return panel_count(out_features) * in_features * kPanelWidth;
}

PackedWeight pack_weight(const at::Tensor& w, const at::Tensor& storage) {
  if (!packing_applies(w)) {
    throw std::invalid_argument(
        fmt::format("pack_weight: expected a 2-D float32 CPU weight, got {} {} on {}",
                    c10::str(w.sizes()), c10::toString(w.scalar_type()), c10::str(w.device())));
  }
  const int64_t out = w.size(0), in = w.size(1), panels = panel_count(out);
  PackedWeight packed{storage.defined() ? storage.narrow(0, 0, packed_numel(out, in))
                                        : at::empty({packed_numel(out, in)}, w.options()),
                      out, in};
  packed.panels = packed.panels.view({panels, in, kPanelWidth});
  if (in == 0) return packed;  // nothing to lay out
  // panels[p][k][j] = w[16p + j][k], zero past the last output.
  const at::Tensor padded = panels * kPanelWidth == out
                                ? w
                                : at::constant_pad_nd(w, {0, 0, 0, panels * kPanelWidth - out});
  packed.panels.copy_(padded.view({panels, kPanelWidth, in}).transpose(1, 2));
  return packed;
}

at::Tensor unpack_weight(const PackedWeight& w) {
  return w.panels.transpose(1, 2)
      .reshape({-1, w.in_features})
      .narrow(0, 0, w.out_features)
      .contiguous();  // [out, in]
}

at::Tensor packed_linear(const at::Tensor& x, const PackedWeight& w, const at::Tensor& bias) {
  if (!x.device().is_cpu() || x.scalar_type() != at::kFloat || x.dim() < 1 ||
      x.size(-1) != w.in_features) {
    throw std::invalid_argument(fmt::format("packed_linear: input {} {} for a weight [{}, {}]",
                                            c10::str(x.sizes()), c10::toString(x.scalar_type()),
                                            w.out_features, w.in_features));
  }
  const at::Tensor xc = x.contiguous();
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = w.out_features;
  at::Tensor y = at::empty(shape, x.options());  // [..., out]
  if (w.in_features == 0) return y.zero_();      // empty sums
  const int64_t rows = xc.numel() / w.in_features;
  if (rows == 0 || w.out_features == 0) return y;
  const Operands op{xc.data_ptr<float>(), w.panels.data_ptr<float>(), y.data_ptr<float>(),
                    w.in_features, w.out_features};
  // Each thread takes whole groups of panels, so none ends in a partial group.
  const int64_t group = cpu_has_avx512() ? kAvx512Panels : 1;
  const int64_t groups = (panel_count(w.out_features) + group - 1) / group;
  const int64_t work = group * kPanelWidth * rows * w.in_features;
  kernel_parallel_for(0, groups, simd::grain_for(work), [&](int64_t begin, int64_t end) {
    const int64_t first = begin * group, last = std::min(end * group, panel_count(w.out_features));
    if (cpu_has_avx512()) {
      panels_times_rows_avx512(op, rows, first, last);
    } else if (cpu_has_avx2()) {
      panels_times_rows_avx2(op, rows, first, last);
    } else {
      panels_times_rows_baseline(op, rows, first, last);
    }
  });
  if (bias.defined()) y.add_(bias);
  return y;
}

}  // namespace vitrine::models
