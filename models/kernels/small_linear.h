// y = x·Wᵀ + b for a few rows of x against a weight in the checkpoint's
// [out, in] layout: the LoRA factors of a decode step, and the projections
// of models not packed for inference (packed_linear serves those).
//
// BLAS sgemm packs the whole weight into its own layout on every call,
// which for 1 to 16 rows costs as much as the product; this kernel streams
// each weight row once from memory and takes the dot products of all rows
// of x with it while it is in cache. Inference only (no autograd), float32,
// CPU; elsewhere, or for more rows, callers use at::linear.
#pragma once

#include <ATen/core/Tensor.h>

namespace vitrine::models {

// Most rows for which small_linear beats sgemm here (measured in decode_bench).
inline constexpr int64_t kSmallLinearMaxRows = 16;

// Whether small_linear applies to x [..., in] and w [out, in]: float32 CPU
// tensors, at most kSmallLinearMaxRows rows, gradients off.
bool small_linear_applies(const at::Tensor& x, const at::Tensor& w);

// x [..., in], w [out, in], bias [out] or undefined -> [..., out].
at::Tensor small_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias);

// at::linear, or small_linear where it applies.
at::Tensor fast_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias = {});

}  // namespace vitrine::models
