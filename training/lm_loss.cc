#include "training/lm_loss.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

namespace vitrine::training {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Σ over the counted rows of logits [N, V] of −log_softmax(row)[target],
// targets [N] (kIgnoreLabel = not counted): the summed cross-entropy, with
// its own backward, which writes softmax − one-hot into one [N, V] tensor
// (where nll_loss's backward zero-fills one and log_softmax's writes
// another beside it). It keeps the log-softmax, as log_softmax does.
struct CrossEntropySum : torch::autograd::Function<CrossEntropySum> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits,
                            const at::Tensor& targets) {
    const at::Tensor log_probs = at::_log_softmax(logits, 1, /*half_to_float=*/false);
    const at::Tensor counted = (targets != kIgnoreLabel).unsqueeze(1);  // [N, 1]
    const at::Tensor index = at::where(counted, targets.unsqueeze(1), 0);
    ctx->save_for_backward({log_probs, index, counted});
    return log_probs.gather(1, index).masked_fill_(counted.logical_not(), 0).sum().neg_();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &log_probs = saved[0], &index = saved[1], &counted = saved[2];
    // (softmax − one-hot) · g on the counted rows, zero on the others.
    at::Tensor d = log_probs.exp();
    d.scatter_add_(1, index, at::full({d.size(0), 1}, -1.0, d.options()));
    d.mul_(counted.to(d.scalar_type()) * grads[0]);
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
