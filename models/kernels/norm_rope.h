// RMS norm and RoPE, forward and backward, and SwiGLU's backward, as one
// pass over each row: what the training ops (models/training_ops.h) run
// inside autograd instead of the chains of ATen elementwise operators their
// formulas take (a dozen passes over the activations, each with its own
// allocation).
//
// Same formulas, in the same operation order per element as the ATen
// chains; the norm's sum of squares and the backward's dot product are
// summed in another order, and the compiler may fuse a product and a sum
// into one FMA: equal within float32 rounding. AVX2 + FMA where the CPU
// has it, SSE elsewhere.
// Float32, CPU, rows contiguous in their last dimension. Serving takes the
// forwards too, under c10::InferenceMode (training_ops.h says when). Not
// goals: other dtypes.
#pragma once

#include <ATen/core/Tensor.h>

namespace vitrine::models {

// y = weight · x · s per row of x [..., n] (any leading shape, contiguous),
// s = 1 / √(mean(x²) + eps) -> {y [..., n], s [..., 1]}.
std::pair<at::Tensor, at::Tensor> rms_norm_rows(const at::Tensor& x, const at::Tensor& weight,
                                                double eps);

// The gradient of x from dy [..., n] (any strides), x and s as above:
// dx = s·(dn − n·mean(dn·n)), n = x·s, dn = dy·weight.
at::Tensor rms_norm_rows_backward(const at::Tensor& dy, const at::Tensor& x,
                                  const at::Tensor& weight, const at::Tensor& s);

// x·cos + rotate_half(x)·sin for x [b, heads, t, d] (any strides, the last
// dimension contiguous), cos and sin [b, 1, t, d] -> [b, heads, t, d]
// contiguous. With `backward`, the gradient of x instead from x = dY:
// dY·cos − rotate_half(dY·sin).
at::Tensor rope_rows(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     bool backward);

// SwiGLU's backward (of silu(gate)·up) in one pass over dy, gate and up
// (same shape, any strides) -> {d_gate, d_up}: four ATen passes with two
// temporaries before. σ through simd::exp_lanes, within a few ulp of ATen's.
std::pair<at::Tensor, at::Tensor> swiglu_rows_backward(const at::Tensor& dy, const at::Tensor& gate,
                                                       const at::Tensor& up);

}  // namespace vitrine::models
