#include "training/lm_loss.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>

namespace vitrine::training {

LossSum causal_lm_loss_sum(const at::Tensor& logits, const at::Tensor& labels) {
  RECORD_USER_SCOPE("vitrine::lm_loss");
  const int64_t vocab = logits.size(-1), batch = logits.size(0), seq = logits.size(1);
  // Position t's target is the id at t + 1; the last position has none and
  // is ignored, rather than sliced off: a slice's backward would spread the
  // gradient into a zeroed copy of the whole [batch, seq, vocab] logits.
  const at::Tensor targets =
      at::cat({labels.narrow(1, 1, seq - 1), at::full({batch, 1}, kIgnoreLabel, labels.options())},
              1)
          .reshape({-1});  // [b*s]
  LossSum out;
  out.count = (targets != kIgnoreLabel).sum().item<int64_t>();
  out.sum = at::cross_entropy_loss(logits.reshape({-1, vocab}), targets, /*weight=*/{},
                                   at::Reduction::Sum, kIgnoreLabel);
  return out;
}

}  // namespace vitrine::training
