// Eight-float vectors for the hand-written CPU kernels (small_linear,
// decode_attention), in GCC's vector extensions: the same source compiles to
// AVX2 + FMA in functions marked VITRINE_AVX2 and to SSE elsewhere.
#pragma once

#include <cstdint>

namespace vitrine::models::simd {

// Eight floats, loaded from any 4-byte-aligned address.
typedef float Vec8 __attribute__((vector_size(32), aligned(4), may_alias));

__attribute__((always_inline)) inline Vec8 load8(const float* p) {
  return *reinterpret_cast<const Vec8*>(p);
}
__attribute__((always_inline)) inline void store8(float* p, Vec8 v) {
  *reinterpret_cast<Vec8*>(p) = v;
}

__attribute__((always_inline)) inline float sum8(Vec8 v) {
  float sum = 0;
  for (int j = 0; j < 8; ++j) sum += v[j];
  return sum;
}

// The horizontal sums of eight vectors at once: {sum8(v[0]), ..., sum8(v[7])},
// in three rounds of pairwise adds instead of eight separate reductions.
__attribute__((always_inline)) inline Vec8 sum8x8(const Vec8 (&v)[8]) {
  typedef int32_t Lanes __attribute__((vector_size(32)));
  // Round 1: pairs of neighbouring lanes, two vectors interleaved.
  Vec8 b[4];
  for (int k = 0; k < 4; ++k) {
    b[k] = __builtin_shuffle(v[2 * k], v[2 * k + 1], Lanes{0, 8, 2, 10, 4, 12, 6, 14}) +
           __builtin_shuffle(v[2 * k], v[2 * k + 1], Lanes{1, 9, 3, 11, 5, 13, 7, 15});
  }
  // Round 2: quarters; c[k] = {v0..v3 (k = 0) or v4..v7 (k = 1): lanes 0-3, then lanes 4-7}.
  Vec8 c[2];
  for (int k = 0; k < 2; ++k) {
    c[k] = __builtin_shuffle(b[2 * k], b[2 * k + 1], Lanes{0, 1, 8, 9, 4, 5, 12, 13}) +
           __builtin_shuffle(b[2 * k], b[2 * k + 1], Lanes{2, 3, 10, 11, 6, 7, 14, 15});
  }
  // Round 3: halves.
  return __builtin_shuffle(c[0], c[1], Lanes{0, 1, 2, 3, 8, 9, 10, 11}) +
         __builtin_shuffle(c[0], c[1], Lanes{4, 5, 6, 7, 12, 13, 14, 15});
}

// Items per parallel_for chunk so that a chunk holds at least ~64k
// multiply-adds: waking the second thread costs more than smaller work.
inline int64_t grain_for(int64_t work_per_item) {
  constexpr int64_t kMinWork = 64 * 1024;
  return work_per_item >= kMinWork ? 1 : (kMinWork + work_per_item - 1) / work_per_item;
}

}  // namespace vitrine::models::simd

// A kernel entry point compiled for AVX2 + FMA, with its helpers inlined.
#define VITRINE_AVX2 __attribute__((target("avx2,fma"), flatten))
