#include "models/kernels/packed_int8_vnni.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>

#include "models/kernels/panel_tiles.h"
#include "models/runtime.h"

namespace vitrine::models::int8_kernels {
namespace {

#define VITRINE_VNNI __attribute__((target("avx512f,avx512vl,avx512bw,avx512vnni,avx2,fma")))

constexpr int64_t kPanel = simd::kPanelLanes;  // output features per panel
constexpr int32_t kInt16Top = 32767;           // the largest |xq|

// Bytes fetched ahead of use in a panel: 48 lines, 192 inputs (24 lines,
// the widening build's distance, measured the same within the noise).
constexpr int64_t kPrefetchBytes = 48 * 64;

// 3 panels × 4 rows: 12 accumulators, 3 weight vectors, a broadcast and
// the interleaving index. 8 rows, which would fit 32 registers on paper,
// spill (bench/linear_bench, one thread, 8 rows: 21.7 ms a pass against
// 11.0 ms with 4); 6 rows measured the same as 4.
constexpr int kRows = 4;

// vpermw's index that interleaves the two halves of 32 int16 [even inputs'
// 16 outputs, odd inputs' 16 outputs] into 16 lanes of (even, odd) pairs.
VITRINE_VNNI __m512i interleave_index() {
  alignas(64) int16_t index[32];
  for (int o = 0; o < kPanel; ++o) {
    index[2 * o] = static_cast<int16_t>(o);
    index[2 * o + 1] = static_cast<int16_t>(kPanel + o);
  }
  return _mm512_load_si512(index);
}

// Panels [p0, p0 + P) × rows [r0, r0 + R) over inputs [k0, k1) (k0 even):
// per pair of inputs, P panel rows of 32 bytes sign-extended to int16 and
// interleaved, R broadcast activation pairs, P·R vpdpwssd; the int32 sums
// to float32 times the row's and the panel's scales.
struct VnniTile {
  VnniOperands op;

  template <int P, int R>
  VITRINE_VNNI void run(int64_t p0, int64_t r0, int64_t k0, int64_t k1) const {
    using V = simd::Lanes<16>;
    const __m512i index = interleave_index();
    __m512i acc[P][R];
    for (int p = 0; p < P; ++p) {
      for (int r = 0; r < R; ++r) acc[p][r] = _mm512_setzero_si512();
    }
    const int8_t* w = op.q + p0 * op.in * kPanel;
    const uint32_t* xr = op.x_pairs + r0 * op.in2;
    const int64_t whole = std::min(k1, op.in & ~int64_t{1});  // pairs with both inputs
    // Near a panel's end, the prefetches run on into the same panel of the
    // next group, so that each panel's stream is already flowing when the
    // group after this one starts.
    const int64_t ahead_end = op.in - kPrefetchBytes / kPanel;
    const int64_t next_group = kPrefetchBytes + (P - 1) * op.in * kPanel;
    for (int64_t k = k0; k < k1; k += 2) {
      __m512i wv[P];
      for (int p = 0; p < P; ++p) {
        const int8_t* row = w + (p * op.in + k) * kPanel;
        if ((k & 3) == 0) __builtin_prefetch(row + (k < ahead_end ? kPrefetchBytes : next_group));
        const __m256i bytes =
            k < whole
                ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row))
                : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row)));
        wv[p] = _mm512_permutexvar_epi16(index, _mm512_cvtepi8_epi16(bytes));
      }
      for (int r = 0; r < R; ++r) {
        const __m512i xv = _mm512_set1_epi32(static_cast<int32_t>(xr[r * op.in2 + k / 2]));
        for (int p = 0; p < P; ++p) acc[p][r] = _mm512_dpwssd_epi32(acc[p][r], wv[p], xv);
      }
    }
    V::F sums[P][1][R];
    for (int p = 0; p < P; ++p) {
      const __m512 s = _mm512_loadu_ps(op.scales + (p0 + p) * kPanel);
      for (int r = 0; r < R; ++r) {
        const __m512 scale = _mm512_mul_ps(s, _mm512_set1_ps(op.x_scales[r0 + r]));
        sums[p][0][r] = (V::F)_mm512_mul_ps(_mm512_cvtepi32_ps(acc[p][r]), scale);
      }
    }
    simd::store_tile<16, P, R>(sums, op.y, op.out, p0, r0, k0 == 0);
  }
};

}  // namespace

bool cpu_has_avx512_vnni() {
  static const bool has = cpu_has_avx512() && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vnni") &&
                          std::getenv("VITRINE_NO_AVX512_VNNI") == nullptr;
  return has;
}

VITRINE_VNNI void quantize_rows_int16(const float* x, int64_t in, int64_t begin, int64_t end,
                                      uint32_t* x_pairs, int64_t in2, float* x_scales) {
  for (int64_t r = begin; r < end; ++r) {
    const float* row = x + r * in;
    __m512 top = _mm512_setzero_ps();
    for (int64_t k = 0; k < in; k += 16) {
      const __mmask16 m = in - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (in - k)) - 1);
      top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_maskz_loadu_ps(m, row + k)));
    }
    const float largest = _mm512_reduce_max_ps(top);
    x_scales[r] = largest / kInt16Top;
    const __m512 inverse = _mm512_set1_ps(largest > 0 ? kInt16Top / largest : 0.0f);
    const __m512i lo = _mm512_set1_epi32(-kInt16Top), hi = _mm512_set1_epi32(kInt16Top);
    int16_t* out = reinterpret_cast<int16_t*>(x_pairs + r * in2);
    for (int64_t k = 0; k < in; k += 16) {
      const __mmask16 m = in - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (in - k)) - 1);
      // Rounded to nearest (even on ties) by the default rounding mode.
      const __m512i q =
          _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + k), inverse));
      _mm256_mask_storeu_epi16(
          out + k, m, _mm512_cvtepi32_epi16(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi)));
    }
    if (in % 2 == 1) out[in] = 0;
  }
}

// Group by group of panels, all passes of one group before the next: each
// panel streams from memory front to back (the passes only bound the int32
// sums), and a group's pass stays in cache while the blocks of rows go by.
__attribute__((target("avx512f,avx512vl,avx512bw,avx512vnni,avx2,fma"), flatten)) void vnni_panels(
    const VnniOperands& op, int64_t rows, int64_t first, int64_t last) {
  const VnniTile tile{op};
  for (int64_t p = first; p < last; p += kVnniPanels) {
    simd::panels_times_rows<kVnniPanels, kRows>(tile, rows, p, std::min(last, p + kVnniPanels),
                                                op.in, kVnniPass);
  }
}

}  // namespace vitrine::models::int8_kernels
