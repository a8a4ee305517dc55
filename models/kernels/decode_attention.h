// Attention for a decode step: a few query rows per sequence against that
// sequence's keys and values in the KV cache.
//
// at::matmul turns [batch, kv_heads, rows, d] x [batch, kv_heads, d, keys]
// into one BLAS call per (sequence, head): hundreds of tiny calls per layer
// whose fixed cost is most of a batched decode step. These two kernels do
// all heads in one parallel loop instead. Inference only, float32, CPU,
// head_dim a multiple of 8; the softmax between them stays at::softmax.
#pragma once

#include <ATen/core/Tensor.h>

namespace vitrine::models {

// Whether the kernels apply: float32 CPU tensors, no gradients, head_dim % 8 == 0.
bool decode_attention_applies(const at::Tensor& q, const at::Tensor& k);

// q [b, h, rows, d], k [b, h, keys, d] (any strides with d contiguous)
// -> q·kᵀ [b, h, rows, keys].
at::Tensor attention_scores(const at::Tensor& q, const at::Tensor& k);

// p [b, h, rows, keys], v [b, h, keys, d] (d contiguous) -> p·v [b, h, rows, d].
at::Tensor attention_values(const at::Tensor& p, const at::Tensor& v);

}  // namespace vitrine::models
