// y = x·Wᵀ + b and its backward-data dX = dY·W on bfloat16 weights packed
// for the CPU, with float32 accumulation: the frozen projections of a bf16
// checkpoint, served or LoRA-trained without a float32 copy.
//
// bfloat16 is the upper half of a float32 (8 exponent bits, 7 mantissa
// bits), so widening is exact: a shift. Packed, a weight [out, in] is
// panels of 16 output features (as packed_linear's), and within a panel
// the input features go by pairs, [ceil(out / 16), ceil(in / 2), 16, 2]:
// one 64-byte line holds W[o][2k] and W[o][2k + 1] side by side for the
// panel's 16 outputs o. That is the operand AVX512_BF16's vdpbf16ps wants
// (each 32-bit lane multiplies a pair of weights by a pair of activations
// and adds both products to a float32 lane), fed by one 32-bit broadcast of
// an activation pair per row; and the exact path widens the same line into
// two float32 vectors with one shift and one mask, so both share one copy.
//
// Paths (Bf16Path): the exact one multiplies float32 activations by the
// widened weights with float32 FMA, equal to at::linear on the weights'
// float32 values within float32 rounding (training, whose checks hold
// 1e-4). The fast one also rounds the activations to bfloat16 and runs
// vdpbf16ps where the CPU has AVX512_BF16: twice the multiply-adds per
// instruction, an error of about 2^-9 of each product (measured in
// docs/models.md); for serving, and for training with bf16 compute.
// Backward-data's fast build rounds dY likewise; vdpbf16ps pairs
// neighbours of the reduction, which for dY·W runs along the outputs, so
// it turns blocks of the weights into pairs of outputs as it goes.
//
// Non-goals: autograd (callers wire forward and backward-data into their
// own function), gradients of W (frozen), devices other than the CPU.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <cstring>
#include <string_view>

namespace vitrine::models {

// float32 -> bfloat16 bits, rounded to nearest, ties to even (as
// c10::BFloat16 and the hardware's conversions): values past the largest
// bfloat16 become ±Inf, ±Inf stays, a NaN stays a NaN (quietened, its sign
// and high payload kept). Subnormals are kept, not flushed.
inline uint16_t bf16_from_float(float f) {
  uint32_t u = 0;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// bfloat16 bits -> float32, exactly.
inline float float_from_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f = 0;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

struct PackedWeightBf16 {
  at::Tensor pairs;  // [ceil(out / 16), ceil(in / 2), 16, 2] bfloat16; zero past out and in
  int64_t out_features = 0;
  int64_t in_features = 0;

  bool defined() const { return pairs.defined(); }
};

// Whether w [out, in] can be packed: a 2-D float32, bfloat16 or float16
// CPU tensor (a checkpoint's stored dtypes).
bool packing_bf16_applies(const at::Tensor& w);

// w [out, in] -> pairs; bfloat16 weights are copied bit for bit, float32
// and float16 ones rounded with bf16_from_float (float16 has 3 more
// mantissa bits and a narrower range than bfloat16: it loses the bits, and
// its largest values are kept). `storage`, when given, is where the
// pairs go: a bfloat16 CPU tensor of at least packed_bf16_numel(out, in)
// elements (e.g. a slice of an arena); otherwise they get their own.
PackedWeightBf16 pack_weight_bf16(const at::Tensor& w, const at::Tensor& storage = {});
int64_t packed_bf16_numel(int64_t out_features, int64_t in_features);

// The [out, in] bfloat16 weight back, bit for bit (.to(at::kFloat) gives
// the float32 values every path multiplies by).
at::Tensor unpack_weight_bf16(const PackedWeightBf16& w);

enum class Bf16Path {
  // What callers pick:
  kExact,  // float32 activations × widened weights, float32 FMA: the best build of
           // the widening kernel this CPU runs. Training's default.
  kFast,   // activations rounded to bfloat16, vdpbf16ps, where the CPU has
           // AVX512_BF16; elsewhere kExact (as fast there, and exact). For serving.
  // One build each, for tests and benchmarks (refused on a CPU without it):
  kDotAvx512Bf16,  // vdpbf16ps, activations rounded to bfloat16
  kWidenAvx512,    // widen + FMA, 3 panels × 8 rows
  kWidenAvx2,      // widen + FMA, AVX2: the fallback of CPUs without AVX-512
  kWidenBaseline,  // widen + FMA in SSE: any x86-64
};

std::string_view bf16_path_name(Bf16Path path);

// Whether this CPU runs the AVX512_BF16 build (vdpbf16ps).
// VITRINE_NO_AVX512_BF16=1 turns it off, as VITRINE_NO_AVX512 and
// VITRINE_NO_AVX2 (models/runtime.h) turn off the builds below it; read once.
bool cpu_has_avx512_bf16();

// Whether `path` runs on this CPU (kExact and kFast always do).
bool bf16_path_available(Bf16Path path);

// x [..., in] float32 CPU, bias [out] float32 or undefined -> [..., out]
// float32. Throws std::invalid_argument naming the shapes on a mismatch, or
// the path when this CPU lacks it.
at::Tensor packed_linear_bf16(const at::Tensor& x, const PackedWeightBf16& w,
                              const at::Tensor& bias = {}, Bf16Path path = Bf16Path::kExact);

// dY [..., out] float32 CPU -> dX = dY·W [..., in] float32: the gradient of
// packed_linear_bf16's input, for a frozen W. Every path as the forward's:
// the widening builds exact; kDotAvx512Bf16 (kFast where the CPU has it)
// rounds dY to bfloat16 and runs vdpbf16ps on the weights turned, a few
// input panels at a time, into pairs of outputs (no second copy is kept).
at::Tensor packed_linear_bf16_backward_data(const at::Tensor& dy, const PackedWeightBf16& w,
                                            Bf16Path path = Bf16Path::kExact);

}  // namespace vitrine::models
