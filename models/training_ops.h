// Pieces of the Llama layer with their own backward for training, so that
// the graph keeps their inputs only and recomputes the rest: the attention
// core (scores, softmax, values) keeps q, k and v instead of a score
// matrix per head — the largest activation at long sequences — and runs
// in blocks of query rows that skip the keys no row of a block attends
// (above the diagonal of a causal mask), in one kernel per head
// (models/kernels/training_attention.h); SwiGLU keeps gate and up instead
// of also silu(gate), RoPE keeps nothing and the RMS norm its input and
// one scale per row, both one pass per row (models/kernels/norm_rope.h).
//
// `training` (the module's training mode): the training forwards run even
// when no graph is built (the first layer, whose input needs no gradient,
// and the forward of a layer under activation checkpointing), so that a
// recomputed layer computes, bit for bit, what its forward did. Under
// c10::InferenceMode (serving) RoPE and the RMS norm take their one-pass
// kernels too (a decode step's calls are short and many); otherwise
// (evaluation under NoGradGuard) they are the plain formulas. The two
// agree within float32 rounding.
#pragma once

#include <ATen/core/Tensor.h>

namespace vitrine::models {

// q [b, KV, g·s, d] (the g query heads sharing a KV head, stacked along the
// rows), k and v [b, KV, keys, d], mask [b, 1, s, keys] (true = not
// attended) or undefined -> softmax(q·kᵀ / √d, masked) · v [b, KV, g·s, d].
at::Tensor attention_core(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& mask, int64_t groups, bool training = false);

// softmax(scores / √head_dim) with the mask applied, scaling and masking
// `scores` [b, KV, g·s, keys] in place (q·kᵀ however it was computed).
at::Tensor attention_softmax(at::Tensor scores, const at::Tensor& mask, int64_t groups,
                             int64_t head_dim);

// Dropout while training: x·noise, noise = bernoulli(1 − p) / (1 − p),
// the values and random draws of at::dropout(x, p, true), bit for bit; its
// backward keeps the mask as one byte per element where libtorch's CPU
// dropout keeps the float noise (4 bytes): at the 1B recipe, LoRA on all
// seven projections with dropout, 1.2 GB of a step's activations.
at::Tensor dropout(const at::Tensor& x, double p);

// silu(gate) * up, elementwise.
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);

// RoPE in the rotate-half layout: x·cos + rotate_half(x)·sin, x [b, heads,
// s, d], cos and sin [b, 1, s, d] (no gradient). Keeps nothing of x: the
// backward is g·cos − rotate_half(g·sin).
at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                bool training = false);

// RMS norm with a frozen weight: weight · x / √(mean(x²) + eps) over the
// last dimension. Keeps x and the per-row 1/rms, not the normalised x.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps,
                    bool training = false);

}  // namespace vitrine::models
