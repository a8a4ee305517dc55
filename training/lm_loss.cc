#include "training/lm_loss.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

namespace vitrine::training {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Σ over the counted rows of logits [N, V] of logsumexp(row) − row[target],
// targets [N] (kIgnoreLabel = not counted): the summed cross-entropy, with
// its own backward. It keeps the logits and one log-sum-exp per row (where
// log_softmax + nll_loss keep a [N, V] log-softmax), and its backward
// writes softmax − one-hot in one tensor, in place, where theirs zero-fill
// an [N, V] gradient for nll_loss and then write another for log_softmax.
struct CrossEntropySum : torch::autograd::Function<CrossEntropySum> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits,
                            const at::Tensor& targets) {
    const at::Tensor lse = at::logsumexp(logits, -1, /*keepdim=*/true);  // [N, 1]
    const at::Tensor counted = (targets != kIgnoreLabel).unsqueeze(1);   // [N, 1]
    const at::Tensor index = at::where(counted, targets.unsqueeze(1), 0);
    ctx->save_for_backward({logits, lse, index, counted});
    return (lse - logits.gather(1, index)).masked_fill_(counted.logical_not(), 0).sum();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &logits = saved[0], &lse = saved[1], &index = saved[2], &counted = saved[3];
    // (softmax − one-hot) · g on the counted rows, zero on the others.
    at::Tensor d = (logits - lse).exp_();
    d.scatter_add_(1, index, at::full({logits.size(0), 1}, -1.0, logits.options()));
    d.mul_(counted.to(logits.scalar_type()) * grads[0]);
    return {d, at::Tensor()};
  }
};

}  // namespace

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
  out.sum = CrossEntropySum::apply(logits.reshape({-1, vocab}), targets);
  return out;
}

}  // namespace vitrine::training
