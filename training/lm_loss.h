// The causal language-model loss, as transformers computes it: position t
// predicts the id at t + 1, labels of -100 are ignored, and the loss is the
// sum of token cross-entropies over the count of counted targets in the
// whole batch (not a mean of per-sequence means).
#pragma once

#include <ATen/core/Tensor.h>

namespace vitrine::training {

inline constexpr int64_t kIgnoreLabel = -100;

// The summed cross-entropy and the number of targets it covers, so that
// gradient accumulation can divide by the count of the whole batch.
struct LossSum {
  at::Tensor sum;     // scalar, differentiable
  int64_t count = 0;  // targets counted
};

// logits [batch, seq, vocab] (float32), labels [batch, seq] (int64; the
// model shifts them).
LossSum causal_lm_loss_sum(const at::Tensor& logits, const at::Tensor& labels);

}  // namespace vitrine::training
