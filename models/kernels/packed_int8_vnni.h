// The VNNI build of packed_linear_int8 for decode (a few rows): integer
// dot products of the int8 panels with the activations quantized to int16,
// vpdpwssd (AVX512_VNNI), 32 multiply-adds per instruction where the
// widening build spends three instructions per 16. Internal to
// models/kernels/: callers use packed_linear_int8.h.
//
// Each row of x is quantized symmetrically at run time: xscale = max_k |x[k]|
// / 32767, xq[k] = round(x[k] / xscale) in [-32767, 32767], so each
// activation moves by at most xscale / 2 (2^-16 of the row's largest). A
// pair of inputs (k, k+1) of one output is a 32-bit lane: two int16 weights
// (the panel's int8 sign-extended, the lanes interleaved by vpermw) against
// the broadcast pair of int16 activations, summed exactly in int32. The sums
// of a pass of kVnniPass inputs cannot overflow (256 pairs × 2 × 127 × 32767
// < 2^31); each pass's sums go to float32 times xscale and the panel's
// scales, added into y. So the error against at::linear on the dequantized
// weights is the activations' rounding alone, at most Σ_k |wq[o][k]| ·
// xscale / 2 for output o (wq the dequantized weight), plus float32
// rounding of the passes' sums.
#pragma once

#include <cstdint>

namespace vitrine::models::int8_kernels {

// Inputs per pass of the VNNI tile: the most whose int32 sums cannot overflow.
inline constexpr int64_t kVnniPass = 512;

// One product's operands: the rows quantized by quantize_rows_int16, the
// panels [panels, in, 16] int8 with 16 scales each, y rows of stride out.
struct VnniOperands {
  const uint32_t* x_pairs = nullptr;  // [rows, in2] pairs of int16 (even input in the low half)
  const float* x_scales = nullptr;    // [rows]
  const int8_t* q = nullptr;
  const float* scales = nullptr;
  float* y = nullptr;
  int64_t in = 0, in2 = 0, out = 0;  // in2 = ceil(in / 2)
};

// Whether this CPU runs the VNNI build (AVX512_VNNI and AVX512BW beside
// cpu_has_avx512()). VITRINE_NO_AVX512_VNNI=1 turns it off; read once.
bool cpu_has_avx512_vnni();

// Rows [begin, end) of x (rows of `in` floats) quantized to int16 pairs
// (rows of in2 words, a zero past an odd in) and their scales (see above).
// Only where cpu_has_avx512_vnni().
void quantize_rows_int16(const float* x, int64_t in, int64_t begin, int64_t end, uint32_t* x_pairs,
                         int64_t in2, float* x_scales);

// Panels [first, last) of y for every row. Only where cpu_has_avx512_vnni().
void vnni_panels(const VnniOperands& op, int64_t rows, int64_t first, int64_t last);

// Panels per tile of vnni_panels: threads split the work in whole groups of it.
inline constexpr int64_t kVnniPanels = 3;

}  // namespace vitrine::models::int8_kernels
