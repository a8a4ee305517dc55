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

// Items per parallel_for chunk so that a chunk holds at least ~64k
// multiply-adds: waking the second thread costs more than smaller work.
inline int64_t grain_for(int64_t work_per_item) {
  constexpr int64_t kMinWork = 64 * 1024;
  return work_per_item >= kMinWork ? 1 : (kMinWork + work_per_item - 1) / work_per_item;
}

}  // namespace vitrine::models::simd

// A kernel entry point compiled for AVX2 + FMA, with its helpers inlined.
#define VITRINE_AVX2 __attribute__((target("avx2,fma"), flatten))
