// y = x·Wᵀ + b on int8 weights with one float32 scale per output row,
// packed for the CPU: the serving format that moves a quarter of float32's
// bytes per decode step.
//
// Quantization is symmetric, per output row o: scale[o] = max_k |W[o][k]| /
// 127 and q[o][k] = round(W[o][k] / scale[o]) in [-127, 127] (ties away
// from zero; a row of zeros keeps scale 0). It is made at load from any
// checkpoint dtype (float32, bfloat16, float16), in float32. The weight the
// kernels multiply by is exactly q·scale: every test compares against
// at::linear on that dequantized weight.
//
// Packed, q is panels of 16 output features as packed_linear's, [ceil(out /
// 16), in, 16] int8: one input feature's 16 weights are 16 bytes side by
// side, zero past out. Three kernels read it:
//  * VNNI (decode, few rows; AVX512_VNNI): each row of activations
//    quantized at run time to int16 (scale max|x| / 32767 per row), the
//    panels' int8 sign-extended to int16 pairs, vpdpwssd into int32 sums
//    (exact), float32 from there (packed_int8_vnni.h). The activations'
//    rounding, at most 2^-16 of the row's largest per activation, is its
//    only error: bench/linear_bench measures 2.7e-5 of the outputs (max /
//    max |y| and mean / mean |y|) on 110m's shapes, against 8e-3 for the
//    weights' own quantization.
//  * widen (decode where the CPU lacks VNNI, or turned off): each 16 bytes
//    widened to 16 float32 (sign extension and conversion, exact), float32
//    FMA with the float32 activations, the panel's 16 scales applied to the
//    sums. Exact up to float32 rounding. AVX-512 (3 panels × 8 rows), AVX2,
//    SSE builds.
//  * bf16-dot (prefill, many rows; AVX512_BF16): a few panels at a time
//    turned into bfloat16 pairs (every int8 is exact in bfloat16) in a
//    buffer that stays in L2, then packed_linear_bf16's vdpbf16ps tile on
//    the activations rounded to bfloat16, the scales applied to the sums.
//    The activations' rounding is its only error, as the bf16 fast path's.
//
// Non-goals: autograd (serving only: training keeps float32 or bf16
// bases), per-block scales (measured not needed on the models here:
// docs/models.md), int8 activations (vpdpbusd): the int16 build already
// streams a batch-1 step's weights at float32's pace (bench/linear_bench,
// one thread), so halving its instructions again would buy little there.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string_view>

namespace vitrine::models {

struct PackedWeightInt8 {
  at::Tensor panels;  // [ceil(out / 16), in, 16] int8; zero past out
  at::Tensor scales;  // [ceil(out / 16) · 16] float32; zero past out
  int64_t out_features = 0;
  int64_t in_features = 0;

  bool defined() const { return panels.defined(); }
};

// Whether w [out, in] can be quantized: a 2-D float32, bfloat16 or float16
// CPU tensor (a checkpoint's stored dtypes).
bool packing_int8_applies(const at::Tensor& w);

// Bytes of the panels and floats of the scales of a packed [out, in] weight.
int64_t packed_int8_bytes(int64_t out_features, int64_t in_features);
int64_t packed_int8_scale_count(int64_t out_features);

// w [out, in] -> q and scales (see above). `panels_storage` (int8, at least
// packed_int8_bytes) and `scales_storage` (float32, at least
// packed_int8_scale_count), when given, are where they go (slices of an
// arena); otherwise they get their own. Throws std::invalid_argument on a
// non-finite weight, naming the row.
PackedWeightInt8 quantize_weight_int8(const at::Tensor& w, const at::Tensor& panels_storage = {},
                                      const at::Tensor& scales_storage = {});

// The weight the kernels multiply by, q·scale, as float32 [out, in].
at::Tensor dequantize_weight_int8(const PackedWeightInt8& w);

enum class Int8Path {
  kAuto,  // below kInt8DotRows rows VNNI where the CPU has it, else widen; bf16-dot from there
          // where the CPU has AVX512_BF16
  // One build each, for tests and benchmarks (refused on a CPU without it):
  kDotAvx512Bf16,  // panels turned into bf16 pairs, vdpbf16ps, activations rounded to bf16
  kVnniAvx512,     // activations quantized per row to int16, vpdpwssd, 3 panels × 4 rows
  kWidenAvx512,    // int8 -> float32, FMA, 3 panels × 8 rows
  kWidenAvx2,      // the same in AVX2: the fallback of CPUs without AVX-512
  kWidenBaseline,  // the same in SSE: any x86-64
};

// Rows from which kAuto takes the bf16-dot build. bench/linear_bench on
// 110m's shapes: at one row the widening build is 2.2x the dot one (which
// turns every panel for a single row), from 16 rows on the dot one is ahead
// (1.4x at 16, 1.7x at 64); at 8 they are level within the noise. The VNNI
// build, where there is one, is ahead of the widening one at every row
// count below (one thread: 1.4x at 1 row, 1.7x at 4 and 15).
inline constexpr int64_t kInt8DotRows = 16;

std::string_view int8_path_name(Int8Path path);
// Whether `path` runs on this CPU (kAuto always does).
bool int8_path_available(Int8Path path);

// x [..., in] float32 CPU, bias [out] float32 or undefined -> [..., out]
// float32. Throws std::invalid_argument naming the shapes on a mismatch, or
// the build when this CPU lacks it.
at::Tensor packed_linear_int8(const at::Tensor& x, const PackedWeightInt8& w,
                              const at::Tensor& bias = {}, Int8Path path = Int8Path::kAuto);

}  // namespace vitrine::models
