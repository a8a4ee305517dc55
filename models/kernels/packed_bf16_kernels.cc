#include "models/kernels/packed_bf16_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "models/kernels/panel_tiles.h"
#include "models/kernels/simd_vec8.h"

namespace vitrine::models::bf16_kernels {
namespace {

using simd::Lanes;

// 32-bit words (pairs of bfloat16) in a line: one per output of a panel.
constexpr int64_t kLine = simd::kPanelLanes;

// Pairs of input features per pass over a tile: 512 features, as
// packed_linear's passes, so the exact path rounds as the float32 kernel.
constexpr int64_t kForwardPass = 256;

// Lines (pair rows) fetched ahead of use, as packed_linear (24 lines
// measured best there for a decode step).
constexpr int64_t kPrefetchAhead = 24;

// Forward, exact: panels [p0, p0 + P) × rows [r0, r0 + R) over pairs
// [k0, k1); per pair, P lines widened to two panel rows each and 2R
// broadcasts of float32 activations, multiply-added in packed_linear's
// order (the even feature, then the odd one). Vectors of L lanes.
template <int L>
struct WidenTile {
  ForwardOperands op;

  template <int P, int R>
  __attribute__((always_inline)) void run(int64_t p0, int64_t r0, int64_t k0, int64_t k1) const {
    using V = Lanes<L>;
    constexpr int N = V::kPerPanelRow;
    typename V::F acc[P][N][R] = {};
    const float* x = op.x + r0 * op.x_stride;
    const uint32_t* w = op.pairs + p0 * op.in2 * kLine;
    for (int64_t k = k0; k < k1; ++k) {
      typename V::F even[P][N], odd[P][N];
      for (int p = 0; p < P; ++p) {
        __builtin_prefetch(w + (p * op.in2 + k + kPrefetchAhead) * kLine);
        for (int n = 0; n < N; ++n) {
          const typename V::U line = V::load_words(w + (p * op.in2 + k) * kLine + n * L);
          even[p][n] = V::widen_even(line);
          odd[p][n] = V::widen_odd(line);
        }
      }
      for (int r = 0; r < R; ++r) {
        const float x0 = x[r * op.x_stride + 2 * k], x1 = x[r * op.x_stride + 2 * k + 1];
        for (int p = 0; p < P; ++p) {
          for (int n = 0; n < N; ++n) {
            acc[p][n][r] += even[p][n] * x0;
            acc[p][n][r] += odd[p][n] * x1;
          }
        }
      }
    }
    simd::store_tile<L, P, R>(acc, op.y, op.out, p0, r0, k0 == 0);
  }
};

// Forward with vdpbf16ps: per pair, P lines and R broadcasts of an
// activation pair, P·R instructions of 32 multiply-adds each (float32
// products of bfloat16 values are exact; the sums round as float32).
// Not always_inline: GCC inlines intrinsics only into functions of their
// target, and the entry point (flatten) inlines this one.
struct DotTile {
  ForwardOperands op;

  template <int P, int R>
  __attribute__((target("avx512f,avx512bf16"))) void run(int64_t p0, int64_t r0, int64_t k0,
                                                         int64_t k1) const {
    __m512 acc[P][R];
    for (int p = 0; p < P; ++p) {
      for (int r = 0; r < R; ++r) acc[p][r] = _mm512_setzero_ps();
    }
    const uint32_t* x = op.xb + r0 * op.in2;
    const uint32_t* w = op.pairs + p0 * op.in2 * kLine;
    for (int64_t k = k0; k < k1; ++k) {
      __m512i line[P];
      for (int p = 0; p < P; ++p) {
        __builtin_prefetch(w + (p * op.in2 + k + kPrefetchAhead) * kLine);
        line[p] = _mm512_loadu_si512(w + (p * op.in2 + k) * kLine);
      }
      for (int r = 0; r < R; ++r) {
        const __m512bh xv = (__m512bh)_mm512_set1_epi32(static_cast<int>(x[r * op.in2 + k]));
        for (int p = 0; p < P; ++p) acc[p][r] = _mm512_dpbf16_ps(acc[p][r], (__m512bh)line[p], xv);
      }
    }
    typename Lanes<16>::F sums[P][1][R];
    for (int p = 0; p < P; ++p) {
      for (int r = 0; r < R; ++r) sums[p][0][r] = (typename Lanes<16>::F)acc[p][r];
    }
    simd::store_tile<16, P, R>(sums, op.y, op.out, p0, r0, k0 == 0, op.y_stride);
  }
};

// The builds' tiles fill their registers without spilling: AVX-512 has 32
// of 16 floats (3 × 8 accumulators, 3 lines, their widened halves or a
// broadcast); AVX2 16 of 8 floats (a panel row is two: 1 × 4 rows take 8,
// the widened line 4); SSE 16 of 4.
constexpr int kAvx512Panels = 3, kAvx512Rows = 8;
constexpr int kAvx2Panels = 1, kAvx2Rows = 4;
constexpr int kBaselinePanels = 1, kBaselineRows = 2;

__attribute__((target("avx512f,avx512vl,avx2,fma"), flatten)) void forward_widen_avx512(
    const ForwardOperands& op, int64_t rows, int64_t first, int64_t last) {
  simd::panels_times_rows<kAvx512Panels, kAvx512Rows>(WidenTile<16>{op}, rows, first, last, op.in2,
                                                      kForwardPass);
}

VITRINE_AVX2 void forward_widen_avx2(const ForwardOperands& op, int64_t rows, int64_t first,
                                     int64_t last) {
  simd::panels_times_rows<kAvx2Panels, kAvx2Rows>(WidenTile<8>{op}, rows, first, last, op.in2,
                                                  kForwardPass);
}

__attribute__((flatten)) void forward_widen_baseline(const ForwardOperands& op, int64_t rows,
                                                     int64_t first, int64_t last) {
  simd::panels_times_rows<kBaselinePanels, kBaselineRows>(WidenTile<4>{op}, rows, first, last,
                                                          op.in2, kForwardPass);
}

__attribute__((target("avx512f,avx512vl,avx512bf16,avx2,fma"), flatten)) void
forward_dot_avx512bf16(const ForwardOperands& op, int64_t rows, int64_t first, int64_t last) {
  simd::panels_times_rows<kAvx512Panels, kAvx512Rows>(DotTile{op}, rows, first, last, op.in2,
                                                      kForwardPass);
}

// The horizontal sums of sixteen vectors at once, {Σ v[0], ..., Σ v[15]}:
// four rounds that each add neighbouring blocks of lanes (1, 2, 4, 8) of
// two vectors, instead of sixteen separate reductions.
using Vec16 = Lanes<16>::F;
typedef int32_t Lanes16 __attribute__((vector_size(64)));

template <int G>
__attribute__((always_inline)) inline Vec16 add_blocks(Vec16 a, Vec16 b) {
  // Lane i of the result: the block pair of i (in blocks of G) of a where
  // i's block is even, of b where it is odd.
  if constexpr (G == 1) {
    return __builtin_shuffle(a, b,
                             Lanes16{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}) +
           __builtin_shuffle(a, b,
                             Lanes16{1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31});
  } else if constexpr (G == 2) {
    return __builtin_shuffle(a, b,
                             Lanes16{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}) +
           __builtin_shuffle(a, b,
                             Lanes16{2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31});
  } else if constexpr (G == 4) {
    return __builtin_shuffle(a, b,
                             Lanes16{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}) +
           __builtin_shuffle(a, b,
                             Lanes16{4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31});
  } else {
    static_assert(G == 8);
    return __builtin_shuffle(a, b,
                             Lanes16{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}) +
           __builtin_shuffle(a, b,
                             Lanes16{8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31});
  }
}

__attribute__((always_inline)) inline Vec16 sum16x16(const Vec16 (&v)[16]) {
  Vec16 b[8], c[4], d[2];
  for (int i = 0; i < 8; ++i) b[i] = add_blocks<1>(v[2 * i], v[2 * i + 1]);
  for (int i = 0; i < 4; ++i) c[i] = add_blocks<2>(b[2 * i], b[2 * i + 1]);
  for (int i = 0; i < 2; ++i) d[i] = add_blocks<4>(c[2 * i], c[2 * i + 1]);
  return add_blocks<8>(d[0], d[1]);
}

// Panels per pass of backward-data: each output of a pass is one horizontal
// sum of its lanes, added into dX.
constexpr int64_t kBackwardPass = 64;

// Rows of dY per chunk in backward-data: their share of a pass (64 rows ×
// 64 panels × 64 bytes, 256 KB) stays in L2 while the tiles of every input
// pair go by; all rows of a 512-row product (2 MB) would come from L3 for
// each pair.
constexpr int64_t kBackwardRowChunk = 64;

// Lines fetched ahead in backward-data: the same panel's lines some pairs
// further on, which the next tiles of a row block read.
constexpr int64_t kBackwardPrefetchPairs = 8;

// Backward-data, exact: input pairs [g0, g0 + K) × rows [r0, r0 + R) over
// panels [q0, q1). Per panel, K lines widened to 2K panel rows and R rows
// of 16 dY values, multiply-added lane by lane: each accumulator holds the
// products of one input feature with the panel's outputs, so the tile ends
// in horizontal sums. (P of simd::panels_times_rows is K here.)
template <int L>
struct BackwardTile {
  using V = Lanes<L>;
  static constexpr int N = V::kPerPanelRow;
  BackwardOperands op;

  template <int K, int R>
  __attribute__((always_inline)) void run(int64_t g0, int64_t r0, int64_t q0, int64_t q1) const {
    typename V::F acc[R][2 * K][N] = {};
    for (int64_t q = q0; q < q1; ++q) {
      const uint32_t* lines = op.pairs + (q * op.in2 + g0) * kLine;
      __builtin_prefetch(lines + kBackwardPrefetchPairs * kLine);
      typename V::F w[2 * K][N];
      for (int c = 0; c < K; ++c) {
        for (int n = 0; n < N; ++n) {
          const typename V::U line = V::load_words(lines + c * kLine + n * L);
          w[2 * c][n] = V::widen_even(line);
          w[2 * c + 1][n] = V::widen_odd(line);
        }
      }
      for (int r = 0; r < R; ++r) {
        for (int n = 0; n < N; ++n) {
          const typename V::F dy = V::load(op.dy + (r0 + r) * op.dy_stride + q * kLine + n * L);
          for (int c = 0; c < 2 * K; ++c) acc[r][c][n] += w[c][n] * dy;
        }
      }
    }
    store_columns<K, R>(acc, g0, r0, q0 == 0);
  }

  // dX[r0 + r][2·g0 + c] (+)= the sum of acc[r][c]'s lanes, skipping the
  // feature past an odd in.
  template <int K, int R>
  __attribute__((always_inline)) void store_columns(const typename V::F (&acc)[R][2 * K][N],
                                                    int64_t g0, int64_t r0, bool first_pass) const {
    float sums[R * 2 * K];
    if constexpr (L == 16 && R * 2 * K == 16) {
      Vec16 flat[16];
      for (int r = 0; r < R; ++r) {
        for (int c = 0; c < 2 * K; ++c) flat[r * 2 * K + c] = acc[r][c][0];
      }
      Lanes<16>::store(sums, sum16x16(flat));
    } else {
      for (int r = 0; r < R; ++r) {
        for (int c = 0; c < 2 * K; ++c) {
          typename V::F v = acc[r][c][0];
          for (int n = 1; n < N; ++n) v += acc[r][c][n];
          float sum = 0;
          for (int j = 0; j < L; ++j) sum += v[j];
          sums[r * 2 * K + c] = sum;
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      float* dx = op.dx + (r0 + r) * op.in;
      for (int c = 0; c < 2 * K && 2 * g0 + c < op.in; ++c) {
        dx[2 * g0 + c] = (first_pass ? 0 : dx[2 * g0 + c]) + sums[r * 2 * K + c];
      }
    }
  }
};

// 2 pairs × 4 rows: 16 accumulators (one sum16x16), 4 widened lines, a row
// of dY. With up to 8 rows, 1 pair × 8 rows instead: each line is widened
// once for all rows rather than once per block of 4, and the weights, read
// once, stream in single lines (measured on 2048 x 2048, 8 rows: 5.0 ms
// against 6.9; 1 row 6.0 against 9.0; from 16 rows on 2 × 4 is ahead,
// 190 against 145 GFLOP/s). AVX2: 1 pair × 3 rows of two-register panel
// rows, 12 accumulators and the widened line's 4 registers, dY read from
// memory by the multiply-adds (ahead of 1 × 2 by about 10 %, of 1 × 4 and
// 2 × 2 too); SSE a quarter of AVX-512's.
constexpr int kAvx512Pairs = 2, kAvx512BackRows = 4;
constexpr int kAvx512FewRowsPairs = 1, kAvx512FewRows = 8;
constexpr int kAvx2Pairs = 1, kAvx2BackRows = 3;
constexpr int kBaselinePairs = 1, kBaselineBackRows = 2;

__attribute__((target("avx512f,avx512vl,avx2,fma"), flatten)) void backward_widen_avx512(
    const BackwardOperands& op, int64_t rows, int64_t first, int64_t last) {
  simd::panels_times_rows<kAvx512Pairs, kAvx512BackRows>(BackwardTile<16>{op}, rows, first, last,
                                                         op.dy_stride / kLine, kBackwardPass,
                                                         kBackwardRowChunk);
}

__attribute__((target("avx512f,avx512vl,avx2,fma"), flatten)) void backward_widen_avx512_few_rows(
    const BackwardOperands& op, int64_t rows, int64_t first, int64_t last) {
  simd::panels_times_rows<kAvx512FewRowsPairs, kAvx512FewRows>(
      BackwardTile<16>{op}, rows, first, last, op.dy_stride / kLine, kBackwardPass);
}

VITRINE_AVX2 void backward_widen_avx2(const BackwardOperands& op, int64_t rows, int64_t first,
                                      int64_t last) {
  simd::panels_times_rows<kAvx2Pairs, kAvx2BackRows>(BackwardTile<8>{op}, rows, first, last,
                                                     op.dy_stride / kLine, kBackwardPass,
                                                     kBackwardRowChunk);
}

__attribute__((flatten)) void backward_widen_baseline(const BackwardOperands& op, int64_t rows,
                                                      int64_t first, int64_t last) {
  simd::panels_times_rows<kBaselinePairs, kBaselineBackRows>(BackwardTile<4>{op}, rows, first, last,
                                                             op.dy_stride / kLine, kBackwardPass,
                                                             kBackwardRowChunk);
}

// Backward-data with vdpbf16ps. vdpbf16ps sums pairs of neighbours, and
// dY·W sums over the outputs, so the pairs must run along the outputs: for
// a few input panels at a time (16 input features each), the weights are
// turned into that layout in a buffer that stays in L2 — pairs of outputs
// (o, o + 1) side by side for 16 inputs — and the forward's DotTile runs on
// it with dY's rounded pairs as its activations. Turning a block of 16 × 16
// weights costs 64 moves against rows × 256 multiply-adds of products, a
// few per cent at hundreds of rows; no second copy of the weights is kept.
constexpr int64_t kTurnedPanels = 3;  // input panels per buffer: 3 × out/2 × 64 bytes

// Input panel q of the packed pairs, turned: turned[t][l] = (W[2t][16q + l],
// W[2t + 1][16q + l]) for every pair of outputs t, zero past in.
void turn_input_panel(const BackwardOperands& op, int64_t q, uint32_t* turned) {
  const int64_t out_panels = op.dy_stride / kLine, out2 = op.dy_stride / 2;
  for (int64_t po = 0; po < out_panels; ++po) {
    // Source line j (input pair 8q + j) holds, per output o of the panel, the
    // word (W[o][2j'], W[o][2j' + 1]); as 64-bit units u = o / 2 its halves
    // are h0 = W[2u][2j'], h1 = W[2u][2j' + 1], h2 = W[2u + 1][2j'],
    // h3 = W[2u + 1][2j' + 1] (with j' = 8q + j).
    uint64_t units[8][8];
    for (int64_t j = 0; j < 8; ++j) {
      const int64_t pair = q * 8 + j;
      if (pair < op.in2) {
        std::memcpy(units[j], op.pairs + (po * op.in2 + pair) * kLine, sizeof units[j]);
      } else {
        std::memset(units[j], 0, sizeof units[j]);
      }
    }
    // Turned line t = po·8 + u holds, per input l = 2j + h, the word
    // (W[2u][l], W[2u + 1][l]): unit j of it is h0, h2, h1, h3.
    for (int64_t u = 0; u < 8; ++u) {
      uint64_t* line = reinterpret_cast<uint64_t*>(turned + (po * 8 + u) * kLine);
      for (int64_t j = 0; j < 8; ++j) {
        const uint64_t v = units[j][u];
        line[j] = (v & 0xffff00000000ffffull) | ((v & 0x00000000ffff0000ull) << 16) |
                  ((v & 0x0000ffff00000000ull) >> 16);
      }
    }
  }
  (void)out2;
}

__attribute__((target("avx512f,avx512vl,avx512bf16,avx2,fma"), flatten)) void
backward_dot_avx512bf16(const BackwardOperands& op, int64_t rows, int64_t first, int64_t last) {
  const int64_t out2 = op.dy_stride / 2;
  const int64_t q_first = first / 8, q_last = (last + 7) / 8;  // input panels
  thread_local std::vector<uint32_t> buffer;
  buffer.resize(static_cast<size_t>(kTurnedPanels * out2 * kLine));
  for (int64_t q0 = q_first; q0 < q_last; q0 += kTurnedPanels) {
    const int64_t n = std::min(kTurnedPanels, q_last - q0);
    for (int64_t i = 0; i < n; ++i) turn_input_panel(op, q0 + i, buffer.data() + i * out2 * kLine);
    ForwardOperands turned;
    turned.xb = op.dyb;
    turned.pairs = buffer.data();
    turned.y = op.dx + q0 * kLine;
    turned.in2 = out2;
    turned.out = std::min(op.in - q0 * kLine, n * kLine);
    turned.y_stride = op.in;
    simd::panels_times_rows<kAvx512Panels, kAvx512Rows>(DotTile{turned}, rows, 0, n, out2,
                                                        kForwardPass);
  }
}

// bf16_from_float on 16 values at once, the rounded halves in the low 16
// bits of each lane.
__attribute__((always_inline)) inline Lanes<16>::U round16_to_bf16(Vec16 v) {
  using Vec16u = Lanes<16>::U;
  const Vec16u u = __builtin_bit_cast(Vec16u, v);
  const Vec16u rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return ((u & 0x7fffffffu) > 0x7f800000u) ? ((u >> 16) | 0x0040u) : rounded;
}

}  // namespace

ForwardBuild forward_build(Bf16Path build) {
  switch (build) {
    case Bf16Path::kDotAvx512Bf16:
      return {forward_dot_avx512bf16, kAvx512Panels};
    case Bf16Path::kWidenAvx512:
      return {forward_widen_avx512, kAvx512Panels};
    case Bf16Path::kWidenAvx2:
      return {forward_widen_avx2, kAvx2Panels};
    case Bf16Path::kWidenBaseline:
      return {forward_widen_baseline, kBaselinePanels};
    default:
      throw std::logic_error("bf16_kernels::forward_build: not a single build");
  }
}

BackwardBuild backward_build(Bf16Path build, int64_t rows) {
  switch (build) {
    case Bf16Path::kDotAvx512Bf16:
      return {backward_dot_avx512bf16, kTurnedPanels * 8};
    case Bf16Path::kWidenAvx512:
      if (rows <= kAvx512FewRows) return {backward_widen_avx512_few_rows, kAvx512FewRowsPairs};
      return {backward_widen_avx512, kAvx512Pairs};
    case Bf16Path::kWidenAvx2:
      return {backward_widen_avx2, kAvx2Pairs};
    case Bf16Path::kWidenBaseline:
      return {backward_widen_baseline, kBaselinePairs};
    default:
      throw std::logic_error("bf16_kernels::backward_build: not a widening build");
  }
}

// Only the vdpbf16ps build needs rounded activations, so only CPUs with
// AVX-512 run this.
__attribute__((target("avx512f,avx512vl,avx512bw,avx2,fma"), flatten)) void round_rows_to_bf16(
    const float* x, int64_t in, int64_t begin, int64_t end, uint16_t* xb, int64_t in2) {
  typedef uint16_t Halves16 __attribute__((vector_size(32), aligned(2), may_alias));
  for (int64_t r = begin; r < end; ++r) {
    const float* xr = x + r * in;
    uint16_t* out = xb + r * 2 * in2;
    int64_t k = 0;
    for (; k + simd::kPanelLanes <= in; k += simd::kPanelLanes) {
      *reinterpret_cast<Halves16*>(out + k) =
          __builtin_convertvector(round16_to_bf16(Lanes<16>::load(xr + k)), Halves16);
    }
    for (; k < in; ++k) out[k] = bf16_from_float(xr[k]);
    if (in % 2 != 0) out[in] = 0;  // the pad of the last pair
  }
}

}  // namespace vitrine::models::bf16_kernels
