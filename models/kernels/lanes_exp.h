// exp on vectors of L floats (simd::Lanes<L>), for kernels that need it in
// their own loops: the training attention's softmax, SwiGLU's backward.
#pragma once

#include <cstdint>

#include "models/kernels/panel_tiles.h"

namespace vitrine::models::simd {

// exp(x) lane by lane, within about 2 ulp where the result is normal: 0
// below −87, +∞ above 88, NaN for NaN. Cody–Waite reduction to
// r = x − n·ln 2 with |r| ≤ ln 2 / 2, the degree-7 Taylor polynomial of
// exp(r) (truncation under 5e-9 relative), scaled by 2ⁿ in the exponent.
template <int L>
__attribute__((always_inline)) inline typename Lanes<L>::F exp_lanes(typename Lanes<L>::F x) {
  using F = typename Lanes<L>::F;
  typedef int32_t I __attribute__((vector_size(4 * L)));
  constexpr float kLow = -87.0f, kHigh = 88.0f;
  const auto below = x<kLow, above = x> kHigh;
  x = below ? F{} + kLow : x;
  x = above ? F{} + kHigh : x;
  // Round to nearest by adding and taking away 1.5·2²³ (|x·log2 e| < 2²²).
  const F n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const F r = (x - n * 0.693145751953125f) - n * 1.428606820309417232e-6f;
  F p = F{} + 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const I scaled = __builtin_bit_cast(I, p) + (__builtin_convertvector(n, I) << 23);
  const F y = below ? F{} : __builtin_bit_cast(F, scaled);
  return above ? F{} + __builtin_inff() : y;
}

}  // namespace vitrine::models::simd
