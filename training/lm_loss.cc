#include "training/lm_loss.h"

#include <ATen/ATen.h>

namespace vitrine::training {

LossSum causal_lm_loss_sum(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t vocab = logits.size(-1), seq = logits.size(1);
  const at::Tensor predicted = logits.narrow(1, 0, seq - 1).reshape({-1, vocab});  // [b*(s-1), V]
  const at::Tensor targets = labels.narrow(1, 1, seq - 1).reshape({-1});           // [b*(s-1)]
  LossSum out;
  out.count = (targets != kIgnoreLabel).sum().item<int64_t>();
  out.sum =
      at::cross_entropy_loss(predicted, targets, /*weight=*/{}, at::Reduction::Sum, kIgnoreLabel);
  return out;
}

}  // namespace vitrine::training
