// The tile loop shared by the panel kernels (packed_linear on float32
// panels, packed_linear_bf16 on bfloat16 pairs): outputs in panels of 16
// features, P panels × R rows of them held in registers at a time, the
// reduction cut into passes whose partial sums are added into y.
//
// A panel row (16 floats) is 16 / L vectors of L lanes, in GCC's vector
// extensions: L = 16 for AVX-512, 8 for AVX2, 4 for SSE, each kernel
// instantiating the templates inside its own target-attributed entry
// points. L must be the target's register width: GCC keeps a wider vector
// type (16 floats in an AVX2 function) in memory, and the accumulators
// with it (the AVX2 tile at 8 GFLOP/s instead of ~60, measured).
#pragma once

#include <algorithm>
#include <cstdint>

namespace vitrine::models::simd {

inline constexpr int kPanelLanes = 16;  // output features per panel row

// Vectors of L floats (F) or L 32-bit words (U), at any 4-byte-aligned address.
template <int L>
struct Lanes {
  static_assert(kPanelLanes % L == 0);
  static constexpr int kPerPanelRow = kPanelLanes / L;
  typedef float F __attribute__((vector_size(4 * L), aligned(4), may_alias));
  typedef uint32_t U __attribute__((vector_size(4 * L), aligned(4), may_alias));

  __attribute__((always_inline)) static F load(const float* p) {
    return *reinterpret_cast<const F*>(p);
  }
  __attribute__((always_inline)) static U load_words(const uint32_t* p) {
    return *reinterpret_cast<const U*>(p);
  }
  __attribute__((always_inline)) static void store(float* p, F v) { *reinterpret_cast<F*>(p) = v; }
  // Pairs of bfloat16 (the even element in the low half of each word) to
  // float32: bfloat16 is the upper half of a float32, so the even element
  // widens with a shift and the odd one with a mask.
  __attribute__((always_inline)) static F widen_even(U pairs) {
    return __builtin_bit_cast(F, pairs << 16);
  }
  __attribute__((always_inline)) static F widen_odd(U pairs) {
    return __builtin_bit_cast(F, pairs & 0xffff0000u);
  }
};

// Writes the accumulators of panels [p0, p0 + P) × rows [r0, r0 + R) into
// y (rows of stride `stride`, 0 = `out`): stored on the first pass over the
// reduction, added on later ones. Outputs past `out` (the zero padding of
// the last panel) are not written.
template <int L, int P, int R>
__attribute__((always_inline)) inline void store_tile(
    const typename Lanes<L>::F (&acc)[P][Lanes<L>::kPerPanelRow][R], float* y_rows, int64_t out,
    int64_t p0, int64_t r0, bool first_pass, int64_t stride = 0) {
  using V = Lanes<L>;
  if (stride == 0) stride = out;
  for (int r = 0; r < R; ++r) {
    float* y = y_rows + (r0 + r) * stride;
    for (int p = 0; p < P; ++p) {
      for (int n = 0; n < V::kPerPanelRow; ++n) {
        const int64_t o = (p0 + p) * kPanelLanes + n * L;
        const typename V::F& a = acc[p][n][r];
        if (o + L <= out) {
          V::store(y + o, first_pass ? a : V::load(y + o) + a);
        } else {
          for (int64_t j = 0; o + j < out && j < L; ++j)
            y[o + j] = (first_pass ? 0 : y[o + j]) + a[j];
        }
      }
    }
  }
}

// A Tile provides
//   template <int P, int R> void run(int64_t p0, int64_t r0, int64_t k0, int64_t k1) const;
// computing panels [p0, p0 + P) for rows [r0, r0 + R) over the reduction
// steps [k0, k1) and storing them with store_tile (first pass: k0 == 0).
// A run that uses target-specific intrinsics must not be always_inline
// (GCC refuses to inline it into these generic templates); the kernel's
// entry point, marked flatten, inlines it all the same.

// tile.run<P, R> for R from 1 to R, chosen at run time (the rows left over
// after the full blocks).
template <int P, int R, class Tile>
__attribute__((always_inline)) inline void tile_rows(const Tile& tile, int64_t p0, int64_t r0,
                                                     int64_t rows, int64_t k0, int64_t k1) {
  if constexpr (R > 1) {
    if (rows < R) return tile_rows<P, R - 1>(tile, p0, r0, rows, k0, k1);
  }
  tile.template run<P, R>(p0, r0, k0, k1);
}

// Panels [begin, end) for every row: each pass of `pass` reduction steps
// (of `depth`) runs over all blocks of R rows, groups of P panels at a
// time, then single panels. The panels' share of a pass stays in cache
// while the blocks of rows go by, and the partial sums of each pass are
// added into y (blocked summation, so long rows round about as BLAS's).
// `row_chunk`, when given, cuts the rows into chunks that each go through
// all panels of a pass in turn, so that the rows' share of a pass stays in
// cache too when there are many of them.
template <int P, int R, class Tile>
__attribute__((always_inline)) inline void panels_times_rows(const Tile& tile, int64_t rows,
                                                             int64_t begin, int64_t end,
                                                             int64_t depth, int64_t pass,
                                                             int64_t row_chunk = 0) {
  if (row_chunk <= 0) row_chunk = rows;
  for (int64_t k0 = 0; k0 < depth; k0 += pass) {
    const int64_t k1 = std::min(depth, k0 + pass);
    for (int64_t c0 = 0; c0 < rows; c0 += row_chunk) {
      const int64_t c1 = std::min(rows, c0 + row_chunk);
      int64_t p = begin;
      for (; p + P <= end; p += P) {
        int64_t r = c0;
        for (; r + R <= c1; r += R) tile.template run<P, R>(p, r, k0, k1);
        if (r < c1) tile_rows<P, R - 1>(tile, p, r, c1 - r, k0, k1);
      }
      for (; p < end; ++p) {
        int64_t r = c0;
        for (; r + R <= c1; r += R) tile.template run<1, R>(p, r, k0, k1);
        if (r < c1) tile_rows<1, R - 1>(tile, p, r, c1 - r, k0, k1);
      }
    }
  }
}

}  // namespace vitrine::models::simd
