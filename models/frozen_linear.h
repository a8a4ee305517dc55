// The products of a frozen base weight held as packed bfloat16, inside
// autograd: what LoRA training on a bf16 base runs for every projection and
// the head.
//
// LoRA never trains the base, so autograd needs only the gradient of the
// input, dX = dY·W: packed_linear_bf16_backward_data on the same packed
// copy. No [out, in] float32 weight and no weight gradient exist; what the
// graph keeps per product is the packed weight (shared, not copied) and
// nothing of x. Outside autograd (inference, or an input that needs no
// gradient, as the first layer's) this is packed_linear_bf16 itself.
#pragma once

#include <ATen/core/Tensor.h>

#include "models/kernels/packed_linear_bf16.h"

namespace vitrine::models {

// y = x·Wᵀ + b for x [..., in] float32, W packed, bias [out] float32 or
// undefined (frozen too). Differentiable in x when grad mode is on and x
// requires grad; the backward runs on the same `path` (kExact: float32
// gradients; kFast: dY rounded to bf16 for vdpbf16ps, as the forward's x).
at::Tensor frozen_bf16_linear(const at::Tensor& x, const PackedWeightBf16& w,
                              const at::Tensor& bias, Bf16Path path);

}  // namespace vitrine::models
