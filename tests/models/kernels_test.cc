// The hand-written decode kernels against the libtorch operations they
// replace, on the shapes and strides the model gives them.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include "models/decode_attention.h"
#include "models/lora.h"
#include "models/small_linear.h"
#include "tests/support/tensors.h"

namespace vitrine::models {
namespace {

using testing::max_abs_diff;

TEST(SmallLinear, EqualsLinearForEveryRowCountAndWidth) {
  c10::InferenceMode inference;
  at::manual_seed(1);
  for (const int64_t in : {8, 13, 64, 771}) {
    const at::Tensor w = at::randn({37, in}), bias = at::randn({37});
    for (int64_t rows = 1; rows <= kSmallLinearMaxRows; ++rows) {
      const at::Tensor x = at::randn({rows, 1, in});
      ASSERT_TRUE(small_linear_applies(x, w));
      EXPECT_LT(max_abs_diff(small_linear(x, w, bias), at::linear(x, w, bias)), 1e-4)
          << rows << " rows of " << in;
      EXPECT_LT(max_abs_diff(small_linear(x, w, {}), at::linear(x, w)), 1e-4);
    }
  }
  // A non-contiguous input (a column slice) is handled, not misread.
  const at::Tensor wide = at::randn({3, 40}), w = at::randn({5, 20});
  const at::Tensor x = wide.narrow(1, 10, 20);
  EXPECT_LT(max_abs_diff(small_linear(x, w, {}), at::linear(x, w)), 1e-4);
}

TEST(SmallLinear, StepsAsideWhereItDoesNotApply) {
  const at::Tensor w = at::randn({4, 8});
  EXPECT_FALSE(small_linear_applies(at::randn({kSmallLinearMaxRows + 1, 8}), w));
  EXPECT_FALSE(small_linear_applies(at::randn({2, 8}, at::kDouble), w));
  // Training: gradients must flow, so autograd's own linear is used.
  const at::Tensor trainable = at::randn({4, 8}).requires_grad_();
  EXPECT_FALSE(small_linear_applies(at::randn({2, 8}), trainable));
  const at::Tensor y = fast_linear(at::randn({2, 8}), trainable);
  y.sum().backward();
  EXPECT_TRUE(trainable.grad().defined());
}

TEST(DecodeAttention, EqualsMatmulOnACacheView) {
  c10::InferenceMode inference;
  at::manual_seed(2);
  // Keys and values as the model passes them: the filled part of a larger
  // cache buffer [batch, heads, capacity, d].
  const at::Tensor k_buffer = at::randn({3, 4, 50, 16}), v_buffer = at::randn({3, 4, 50, 16});
  const at::Tensor k = k_buffer.narrow(2, 0, 21), v = v_buffer.narrow(2, 0, 21);
  for (const int64_t rows : {1, 3}) {
    const at::Tensor q = at::randn({3, 4, rows, 16});
    ASSERT_TRUE(decode_attention_applies(q, k));
    const at::Tensor scores = attention_scores(q, k);
    EXPECT_LT(max_abs_diff(scores, at::matmul(q, k.transpose(2, 3))), 1e-4);
    // Masked keys (probability 0) included, as left padding makes them.
    const at::Tensor p =
        at::softmax(scores.masked_fill(at::arange(21).view({1, 1, 1, 21}) < 4, -INFINITY), -1);
    EXPECT_LT(max_abs_diff(attention_values(p, v), at::matmul(p, v)), 1e-5);
  }
  EXPECT_FALSE(decode_attention_applies(at::randn({1, 1, 1, 12}), at::randn({1, 1, 5, 12})));
}

TEST(LoraLinear, MixedRowsEqualEachRowAlone) {
  c10::InferenceMode inference;
  at::manual_seed(3);
  LoraLinear layer(24, 10, /*bias=*/true);
  layer->weight.copy_(at::randn({10, 24}));
  layer->bias.copy_(at::randn({10}));
  layer->set_adapter(0, {.a = at::randn({4, 24}), .b = at::randn({10, 4}), .scaling = 2.0});
  layer->set_adapter(5, {.a = at::randn({8, 24}), .b = at::randn({10, 8}), .scaling = 0.5});
  const RowAdapters rows = {5, -1, 0, 5, 7};  // 7: a slot this layer does not hold = base
  for (const int64_t seq : {1, 6}) {
    const at::Tensor x = at::randn({5, seq, 24});
    const at::Tensor mixed = layer->forward(x, rows);
    for (int64_t i = 0; i < 5; ++i) {
      const at::Tensor alone = layer->forward(x.narrow(0, i, 1), {rows[static_cast<size_t>(i)]});
      EXPECT_LT(max_abs_diff(mixed.narrow(0, i, 1), alone), 1e-4) << "row " << i;
    }
  }
  // Replacing and removing an adapter updates the mixed path too.
  layer->remove_adapter(5);
  const at::Tensor x = at::randn({2, 1, 24});
  EXPECT_LT(max_abs_diff(layer->forward(x, {5, 0}).narrow(0, 0, 1),
                         at::linear(x.narrow(0, 0, 1), layer->weight, layer->bias)),
            1e-4);
}

}  // namespace
}  // namespace vitrine::models
