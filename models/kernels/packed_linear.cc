#include "models/kernels/packed_linear.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "models/kernels/kernel_threads.h"
#include "models/kernels/panel_tiles.h"
#include "models/kernels/simd_vec8.h"
#include "models/runtime.h"

namespace vitrine::models {
namespace {

// Input features per pass over a tile: the panels' share of a pass stays in
// cache while the blocks of rows go by (simd::panels_times_rows).
constexpr int64_t kPass = 512;

// Panel rows (cache lines) fetched ahead of use. A decode step's products
// are too short for the hardware prefetcher to reach full speed on its own:
// on a 110m-shaped batch-8 step, 24 lines ahead measured 28.1 -> 24.6 ms
// (16 to 32 about as good, 64 and more worse).
constexpr int64_t kPrefetchAhead = 24;

// One product's operands, x rows of stride in, panels of stride in·16, y
// rows of stride out, and its tile: outputs of panels [p0, p0 + P) for rows
// [r0, r0 + R), input features [k0, k1), in P·R panel rows of accumulators
// (vectors of L lanes), one load per panel row and one broadcast per row
// for each feature.
template <int L>
struct FloatTile {
  const float* x;
  const float* panels;
  float* y;
  int64_t in, out;

  template <int P, int R>
  __attribute__((always_inline)) void run(int64_t p0, int64_t r0, int64_t k0, int64_t k1) const {
    using V = simd::Lanes<L>;
    constexpr int N = V::kPerPanelRow;
    typename V::F acc[P][N][R] = {};
    const float* xr = x + r0 * in;
    const float* w = panels + p0 * in * kPanelWidth;
    for (int64_t k = k0; k < k1; ++k) {
      typename V::F wv[P][N];
      for (int p = 0; p < P; ++p) {
        __builtin_prefetch(w + (p * in + k + kPrefetchAhead) * kPanelWidth);
        for (int n = 0; n < N; ++n) wv[p][n] = V::load(w + (p * in + k) * kPanelWidth + n * L);
      }
      for (int r = 0; r < R; ++r) {
        const float xv = xr[r * in + k];
        for (int p = 0; p < P; ++p) {
          for (int n = 0; n < N; ++n) acc[p][n][r] += wv[p][n] * xv;
        }
      }
    }
    simd::store_tile<L, P, R>(acc, y, out, p0, r0, k0 == 0);
  }
};

// One build per instruction set, each with the tile that fills its
// registers without spilling: AVX-512 has 32 of 16 floats (3 × 8
// accumulators, 3 panel rows, a broadcast), AVX2 16 of 8 floats (a panel
// row is two: 1 × 6 rows take 12, plus 2 and 1), SSE 16 of 4 floats.
constexpr int kAvx512Panels = 3, kAvx512Rows = 8;
constexpr int kAvx2Panels = 1, kAvx2Rows = 6;
constexpr int kBaselinePanels = 1, kBaselineRows = 2;

__attribute__((target("avx512f,avx512vl,avx2,fma"), flatten)) void panels_times_rows_avx512(
    const FloatTile<16>& tile, int64_t rows, int64_t begin, int64_t end) {
  simd::panels_times_rows<kAvx512Panels, kAvx512Rows>(tile, rows, begin, end, tile.in, kPass);
}

VITRINE_AVX2 void panels_times_rows_avx2(const FloatTile<8>& tile, int64_t rows, int64_t begin,
                                         int64_t end) {
  simd::panels_times_rows<kAvx2Panels, kAvx2Rows>(tile, rows, begin, end, tile.in, kPass);
}

__attribute__((flatten)) void panels_times_rows_baseline(const FloatTile<4>& tile, int64_t rows,
                                                         int64_t begin, int64_t end) {
  simd::panels_times_rows<kBaselinePanels, kBaselineRows>(tile, rows, begin, end, tile.in, kPass);
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
  const float* xp = xc.data_ptr<float>();
  const float* panels = w.panels.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  // Each thread takes whole groups of panels, so none ends in a partial group.
  const int64_t group = cpu_has_avx512() ? kAvx512Panels : 1;
  const int64_t groups = (panel_count(w.out_features) + group - 1) / group;
  const int64_t work = group * kPanelWidth * rows * w.in_features;
  kernel_parallel_for(0, groups, simd::grain_for(work), [&](int64_t begin, int64_t end) {
    const int64_t first = begin * group, last = std::min(end * group, panel_count(w.out_features));
    if (cpu_has_avx512()) {
      panels_times_rows_avx512({xp, panels, yp, w.in_features, w.out_features}, rows, first, last);
    } else if (cpu_has_avx2()) {
      panels_times_rows_avx2({xp, panels, yp, w.in_features, w.out_features}, rows, first, last);
    } else {
      panels_times_rows_baseline({xp, panels, yp, w.in_features, w.out_features}, rows, first,
                                 last);
    }
  });
  if (bias.defined()) y.add_(bias);
  return y;
}

}  // namespace vitrine::models
