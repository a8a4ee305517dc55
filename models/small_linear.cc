#include "models/small_linear.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "models/runtime.h"
#include "models/simd_vec8.h"

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

// From kColumnMinRows rows on, the products are arithmetic- rather than
// memory-bound, and dot_block spends its time on loads of x and on the
// horizontal sums at the end of every dot product. The column kernel below
// instead lays x out by columns, eight rows side by side: one 8-float vector
// then holds one input feature of eight rows, and a weight element, broadcast,
// multiplies all eight at once. Each accumulator collects the finished outputs
// of eight rows (no horizontal sums), and one load of x serves several weight
// rows. (Measured on a 110m-shaped batch-8 step: about 1.9x faster than
// dot_block<8> when memory is quiet; with fewer than 5 rows the padding to 8
// costs more than it saves.)
inline constexpr int64_t kColumnMinRows = 5;
inline constexpr int64_t kColumnWidth = 8;  // rows of x per column vector

// x [rows, in] -> columns [groups, in, 8], groups = ceil(rows / 8), the rows
// past `rows` zero.
void to_columns(const float* x, int64_t rows, int64_t in, float* columns) {
  const int64_t groups = (rows + kColumnWidth - 1) / kColumnWidth;
  std::fill(columns, columns + groups * in * kColumnWidth, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* column = columns + (r / kColumnWidth) * in * kColumnWidth + r % kColumnWidth;
    const float* xr = x + r * in;
    for (int64_t i = 0; i < in; ++i) column[i * kColumnWidth] = xr[i];
  }
}

// y rows [0, rows) of outputs [o, o + O) from weight rows w[0, O) and G
// groups of columns: part[q][g] collects output o + q of the eight rows of
// group g over one cache line of the weight. O·G = 8 accumulators keep the
// multiply-add units busy without spilling; adding each line's partial sums
// into `total` (blocked summation) keeps the rounding error of 2000-long
// sums near that of dot_block's eight interleaved chains.
template <int O, int G>
__attribute__((always_inline)) inline void column_tile(const float* columns, int64_t rows,
                                                       const float* w, int64_t in, float* y,
                                                       int64_t out_features) {
  Vec8 total[O][G] = {};
  Vec8 part[O][G] = {};
  auto step = [&](int64_t i) {
    Vec8 xv[G];
    for (int g = 0; g < G; ++g) xv[g] = load8(columns + (g * in + i) * kColumnWidth);
    for (int q = 0; q < O; ++q) {
      const float wq = w[q * in + i];
      for (int g = 0; g < G; ++g) part[q][g] += xv[g] * wq;
    }
  };
  auto flush = [&] {
    for (int q = 0; q < O; ++q) {
      for (int g = 0; g < G; ++g) {
        total[q][g] += part[q][g];
        part[q][g] = Vec8{};
      }
    }
  };
  // One cache line of each weight row per iteration, fetched 2 kB ahead.
  constexpr int64_t kLine = 16;
  const int64_t body = in - in % kLine;
  int64_t i = 0;
  for (; i < body; i += kLine) {
    for (int q = 0; q < O; ++q) __builtin_prefetch(w + q * in + i + 512);
    for (int64_t j = 0; j < kLine; ++j) step(i + j);
    flush();
  }
  for (; i < in; ++i) step(i);
  flush();
  for (int q = 0; q < O; ++q) {
    for (int g = 0; g < G; ++g) {
      for (int64_t r = 0; r < kColumnWidth && g * kColumnWidth + r < rows; ++r) {
        y[(g * kColumnWidth + r) * out_features + q] = total[q][g][r];
      }
    }
  }
}

// Weight rows [begin, end) against G groups of columns, O = 8 / G rows at a time.
template <int G>
__attribute__((always_inline)) inline void columns_times_block(const float* columns, int64_t rows,
                                                               const float* w, int64_t in,
                                                               int64_t begin, int64_t end, float* y,
                                                               int64_t out_features) {
  constexpr int O = 8 / G;
  int64_t o = begin;
  for (; o + O <= end; o += O)
    column_tile<O, G>(columns, rows, w + o * in, in, y + o, out_features);
  for (; o < end; ++o) column_tile<1, G>(columns, rows, w + o * in, in, y + o, out_features);
}

__attribute__((always_inline)) inline void columns_times_block_any(const float* columns,
                                                                   int64_t rows, const float* w,
                                                                   int64_t in, int64_t begin,
                                                                   int64_t end, float* y,
                                                                   int64_t out_features) {
  static_assert(kSmallLinearMaxRows <= 2 * kColumnWidth, "column kernel: at most two groups");
  if (rows <= kColumnWidth) {
    columns_times_block<1>(columns, rows, w, in, begin, end, y, out_features);
  } else {
    columns_times_block<2>(columns, rows, w, in, begin, end, y, out_features);
  }
}

// The column tile at 16 floats, where the CPU has AVX-512 (on a 110m-shaped
// batch-8 step, measured 1.2x to 2x faster than the 8-float build on a busy
// machine). One register holds two neighbouring input features of eight
// rows, which is the columns' layout as it is; the two weight elements of
// those features fill its halves (two broadcast loads, the second masked).
// Lanes 0-7 then sum the even features and lanes 8-15 the odd ones, added
// together at the end.
#define VITRINE_AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx2,fma")))

template <int O, int G>
VITRINE_AVX512_TARGET __attribute__((always_inline)) inline void column_tile_avx512(
    const float* columns, int64_t rows, const float* w, int64_t in, float* y,
    int64_t out_features) {
  __m512 total[O][G], part[O][G];
  for (int q = 0; q < O; ++q) {
    for (int g = 0; g < G; ++g) total[q][g] = part[q][g] = _mm512_setzero_ps();
  }
  const int64_t pairs_end = in - in % 2;
  for (int64_t i = 0; i < pairs_end;) {
    // Up to one cache line of each weight row (16 features), then the
    // partial sums are added into the totals as in column_tile.
    const int64_t line_end = std::min(i + 16, pairs_end);
    for (int q = 0; q < O; ++q) __builtin_prefetch(w + q * in + i + 512);
    for (; i < line_end; i += 2) {
      __m512 xv[G];
      for (int g = 0; g < G; ++g) {
        xv[g] = _mm512_loadu_ps(columns + (g * in + i) * kColumnWidth);
      }
      for (int q = 0; q < O; ++q) {
        const float* wq = w + q * in + i;
        const __m512 wv =
            _mm512_mask_broadcastss_ps(_mm512_set1_ps(wq[0]), 0xff00, _mm_load_ss(wq + 1));
        for (int g = 0; g < G; ++g) part[q][g] = _mm512_fmadd_ps(xv[g], wv, part[q][g]);
      }
    }
    for (int q = 0; q < O; ++q) {
      for (int g = 0; g < G; ++g) {
        total[q][g] = _mm512_add_ps(total[q][g], part[q][g]);
        part[q][g] = _mm512_setzero_ps();
      }
    }
  }
  if (pairs_end < in) {  // an odd last feature: its column in lanes 0-7 only
    for (int g = 0; g < G; ++g) {
      const __m512 xv =
          _mm512_maskz_loadu_ps(0x00ff, columns + (g * in + pairs_end) * kColumnWidth);
      for (int q = 0; q < O; ++q) {
        total[q][g] = _mm512_fmadd_ps(xv, _mm512_set1_ps(w[q * in + pairs_end]), total[q][g]);
      }
    }
  }
  for (int q = 0; q < O; ++q) {
    for (int g = 0; g < G; ++g) {
      alignas(64) float lanes[2 * kColumnWidth];
      _mm512_store_ps(lanes, total[q][g]);
      for (int64_t r = 0; r < kColumnWidth && g * kColumnWidth + r < rows; ++r) {
        y[(g * kColumnWidth + r) * out_features + q] = lanes[r] + lanes[kColumnWidth + r];
      }
    }
  }
}

template <int G>
VITRINE_AVX512_TARGET __attribute__((always_inline)) inline void columns_times_block_avx512(
    const float* columns, int64_t rows, const float* w, int64_t in, int64_t begin, int64_t end,
    float* y, int64_t out_features) {
  constexpr int O = 8 / G;
  int64_t o = begin;
  for (; o + O <= end; o += O) {
    column_tile_avx512<O, G>(columns, rows, w + o * in, in, y + o, out_features);
  }
  for (; o < end; ++o) column_tile_avx512<1, G>(columns, rows, w + o * in, in, y + o, out_features);
}

VITRINE_AVX512_TARGET __attribute__((flatten)) void columns_times_block_avx512(
    const float* columns, int64_t rows, const float* w, int64_t in, int64_t begin, int64_t end,
    float* y, int64_t out_features) {
  if (rows <= kColumnWidth) {
    columns_times_block_avx512<1>(columns, rows, w, in, begin, end, y, out_features);
  } else {
    columns_times_block_avx512<2>(columns, rows, w, in, begin, end, y, out_features);
  }
}

// The same code compiled twice: for AVX2 + FMA (chosen at run time when the
// CPU has them) and for the baseline x86-64 target.
VITRINE_AVX2 void columns_times_block_avx2(const float* columns, int64_t rows, const float* w,
                                           int64_t in, int64_t begin, int64_t end, float* y,
                                           int64_t out_features) {
  columns_times_block_any(columns, rows, w, in, begin, end, y, out_features);
}

__attribute__((flatten)) void columns_times_block_default(const float* columns, int64_t rows,
                                                          const float* w, int64_t in, int64_t begin,
                                                          int64_t end, float* y,
                                                          int64_t out_features) {
  columns_times_block_any(columns, rows, w, in, begin, end, y, out_features);
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
  if (rows < kColumnMinRows) {
    // Each thread streams its own block of weight rows.
    at::parallel_for(0, out_features, simd::grain_for(rows * in), [&](int64_t begin, int64_t end) {
      if (cpu_has_avx2()) {
        rows_times_block_avx2(xp, rows, wp, in, begin, end, yp, out_features);
      } else {
        rows_times_block_default(xp, rows, wp, in, begin, end, yp, out_features);
      }
    });
  } else {
    const int64_t groups = (rows + kColumnWidth - 1) / kColumnWidth;
    std::vector<float> columns(static_cast<size_t>(groups * in * kColumnWidth));  // [groups, in, 8]
    to_columns(xp, rows, in, columns.data());
    const float* cp = columns.data();
    // Blocks of 8 weight rows, so that no thread's share ends in a partial tile.
    const int64_t blocks = (out_features + 7) / 8;
    at::parallel_for(0, blocks, simd::grain_for(8 * rows * in), [&](int64_t begin, int64_t end) {
      const int64_t first = begin * 8, last = std::min(end * 8, out_features);
      if (cpu_has_avx512()) {
        columns_times_block_avx512(cp, rows, wp, in, first, last, yp, out_features);
      } else if (cpu_has_avx2()) {
        columns_times_block_avx2(cp, rows, wp, in, first, last, yp, out_features);
      } else {
        columns_times_block_default(cp, rows, wp, in, first, last, yp, out_features);
      }
    });
  }
  if (bias.defined()) y.add_(bias);
  return y;
}

at::Tensor fast_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  return small_linear_applies(x, w) ? small_linear(x, w, bias) : at::linear(x, w, bias);
}

}  // namespace vitrine::models
