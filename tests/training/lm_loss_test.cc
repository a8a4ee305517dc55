// The causal language-model loss and its own backward against ATen's
// cross_entropy on the shifted logits, through autograd.
#include "training/lm_loss.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tests/support/tensors.h"

namespace vitrine::training {
namespace {

using testing::max_abs_diff;

TEST(LmLoss, SumAndGradientEqualCrossEntropyOnTheShiftedLogits) {
  at::manual_seed(8);
  const int64_t batch = 2, seq = 9, vocab = 37;
  const at::Tensor logits0 = at::randn({batch, seq, vocab}) * 4;
  at::Tensor labels = at::randint(vocab, {batch, seq}, at::kLong);
  labels.index_put_({0, at::indexing::Slice(0, 4)}, kIgnoreLabel);  // a prompt not counted
  labels.index_put_({1, 6}, kIgnoreLabel);
  const at::Tensor logits = logits0.clone().requires_grad_(),
                   reference = logits0.clone().requires_grad_();
  const LossSum got = causal_lm_loss_sum(logits, labels);
  const at::Tensor want = at::cross_entropy_loss(
      reference.narrow(1, 0, seq - 1).reshape({-1, vocab}),
      labels.narrow(1, 1, seq - 1).reshape({-1}), {}, at::Reduction::Sum, kIgnoreLabel);
  EXPECT_EQ(got.count, batch * (seq - 1) - 3 - 1);
  EXPECT_NEAR(got.sum.item<double>(), want.item<double>(), 1e-4);
  (got.sum * 0.37).backward();
  (want * 0.37).backward();
  EXPECT_LT(max_abs_diff(logits.grad(), reference.grad()), 1e-6);
  // The last position predicts nothing, and ignored targets give nothing.
  EXPECT_EQ(logits.grad().select(1, seq - 1).abs().max().item<float>(), 0.0f);
  EXPECT_EQ(logits.grad()[1][5].abs().max().item<float>(), 0.0f);
  // Without a graph (evaluation), the same sum.
  at::NoGradGuard no_grad;
  EXPECT_EQ(causal_lm_loss_sum(logits0, labels).sum.item<double>(), got.sum.item<double>());
}

}  // namespace
}  // namespace vitrine::training
