// RMSNorm and rotary position embedding in one pass over each row, for
// inference: the formulas of training_ops (transformers') take five to
// seven libtorch calls each, and a decode step calls them 3 times a layer
// on one row, where a call's fixed cost is most of its time (a 110m int8
// step: about 150 norm and RoPE calls). Float32 CPU tensors under
// c10::InferenceMode (serving: the engine and generation run in it);
// training_ops' rms_norm and rope take these where they apply and the
// formulas elsewhere. The sums run in another order than libtorch's, so
// results differ from the formulas within float32 rounding: training and
// evaluation (NoGradGuard) keep the formulas, so that activation
// checkpointing's recomputation repeats a forward bit for bit.
#pragma once

#include <ATen/core/Tensor.h>

namespace vitrine::models {

// Whether rms_norm_rows applies: x [..., d] and weight [d] float32 CPU
// tensors, d > 0, under c10::InferenceMode.
bool rms_norm_rows_applies(const at::Tensor& x, const at::Tensor& weight);

// weight · x / √(mean(x²) + eps) over the last dimension -> [..., d], contiguous.
at::Tensor rms_norm_rows(const at::Tensor& x, const at::Tensor& weight, double eps);

// Whether rope_rows applies: x [b, h, s, d] and cos, sin [b, 1, s, d]
// float32 CPU tensors, d even, the last dimension contiguous, under
// c10::InferenceMode.
bool rope_rows_applies(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// x·cos + rotate_half(x)·sin, rotate_half(x) = [-x2, x1] for x = [x1, x2]
// -> [b, h, s, d], contiguous.
at::Tensor rope_rows(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace vitrine::models
