#include "models/kernels/small_linear.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <vector>

#include "models/kernels/kernel_threads.h"
#include "models/kernels/simd_vec8.h"
#include "models/runtime.h"

namespace vitrine::models {
namespace {

using simd::load8;
using simd::sum8;
using simd::Vec8;

// y[r * out_stride] = x_r · w for R rows of x (row stride `in`): each
// 8-float piece of w is loaded once and multiplied into all R rows. With
// one or two rows, two accumulators per row hide the multiply-add latency
// (measured: batch-1 decode about 1.15x faster); with more, the rows
// themselves are independent chains (and two per row would not fit in the
// registers).
template <int R>
__attribute__((always_inline)) inline void dot_block(const float* x, const float* w, int64_t in,
                                                     float* y, int64_t out_stride) {
  constexpr int kChains = R <= 2 ? 2 : 1;
  constexpr int64_t kStep = 8 * kChains;
  Vec8 acc[kChains][R] = {};
  const int64_t steps = in - in % kStep, body = in - in % 8;
  int64_t i = 0;
  for (; i < steps; i += kStep) {
    // With several rows the loop consumes the weight more slowly than the
    // hardware prefetcher expects: fetch it 4 kB ahead (batch-8 decode
    // measured about 1.3x faster; one row runs better without).
    if constexpr (R > 1) __builtin_prefetch(w + i + 1024);
    for (int c = 0; c < kChains; ++c) {
      const Vec8 wv = load8(w + i + 8 * c);
      for (int r = 0; r < R; ++r) acc[c][r] += load8(x + r * in + i + 8 * c) * wv;
    }
  }
  if (i < body) {  // one 8-float piece left over by the chains
    const Vec8 wv = load8(w + i);
    for (int r = 0; r < R; ++r) acc[0][r] += load8(x + r * in + i) * wv;
  }
  for (int r = 0; r < R; ++r) {
    Vec8 total = acc[0][r];
    for (int c = 1; c < kChains; ++c) total += acc[c][r];
    float sum = sum8(total);
    for (int64_t j = body; j < in; ++j) sum += x[r * in + j] * w[j];
    y[r * out_stride] = sum;
  }
}

// Weight rows [begin, end) against every row of x, eight rows of x at a
// time. (Tiles of several weight rows were measured slower: the weight
// streams from memory and more streams at once only compete.)
__attribute__((always_inline)) inline void rows_times_block(const float* x, int64_t rows,
                                                            const float* w, int64_t in,
                                                            int64_t begin, int64_t end, float* y,
                                                            int64_t out_features) {
  for (int64_t o = begin; o < end; ++o) {
    const float* wo = w + o * in;
    float* yo = y + o;
    int64_t r = 0;
    for (; r + 8 <= rows; r += 8)
      dot_block<8>(x + r * in, wo, in, yo + r * out_features, out_features);
    if (r + 4 <= rows) {
      dot_block<4>(x + r * in, wo, in, yo + r * out_features, out_features);
      r += 4;
    }
    if (r + 2 <= rows) {
      dot_block<2>(x + r * in, wo, in, yo + r * out_features, out_features);
      r += 2;
    }
    if (r < rows) dot_block<1>(x + r * in, wo, in, yo + r * out_features, out_features);
  }
}

VITRINE_AVX2 void rows_times_block_avx2(const float* x, int64_t rows, const float* w, int64_t in,
                                        int64_t begin, int64_t end, float* y,
                                        int64_t out_features) {
  rows_times_block(x, rows, w, in, begin, end, y, out_features);
}

__attribute__((flatten)) void rows_times_block_default(const float* x, int64_t rows, const float* w,
                                                       int64_t in, int64_t begin, int64_t end,
                                                       float* y, int64_t out_features) {
  rows_times_block(x, rows, w, in, begin, end, y, out_features);
}

}  // namespace

bool small_linear_applies(const at::Tensor& x, const at::Tensor& w) {
  if (c10::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad())) return false;
  if (!x.device().is_cpu() || !w.device().is_cpu()) return false;
  if (x.scalar_type() != at::kFloat || w.scalar_type() != at::kFloat || w.dim() != 2) return false;
  const int64_t in = w.size(1);
  return x.dim() >= 1 && x.size(-1) == in && in > 0 && x.numel() / in <= kSmallLinearMaxRows;
}

at::Tensor small_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  const int64_t in = w.size(1), out_features = w.size(0);
  const at::Tensor xc = x.contiguous(), wc = w.contiguous();
  const int64_t rows = xc.numel() / in;
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out_features;
  at::Tensor y = at::empty(shape, x.options());  // [..., out]
  const float* xp = xc.data_ptr<float>();
  const float* wp = wc.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  // Each thread streams its own block of weight rows.
  kernel_parallel_for(0, out_features, simd::grain_for(rows * in), [&](int64_t begin, int64_t end) {
    if (cpu_has_avx2()) {
      rows_times_block_avx2(xp, rows, wp, in, begin, end, yp, out_features);
    } else {
      rows_times_block_default(xp, rows, wp, in, begin, end, yp, out_features);
    }
  });
  if (bias.defined()) y.add_(bias);
  return y;
}

at::Tensor fast_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  return small_linear_applies(x, w) ? small_linear(x, w, bias) : at::linear(x, w, bias);
}

}  // namespace vitrine::models
