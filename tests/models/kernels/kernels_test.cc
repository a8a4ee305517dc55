// The hand-written decode kernels against the libtorch operations they
// replace, on the shapes and strides the model gives them.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "models/kernels/decode_attention.h"
#include "models/kernels/kernel_threads.h"
#include "models/kernels/packed_linear.h"
#include "models/kernels/small_linear.h"
#include "models/lora.h"
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

// Every index of the range is visited exactly once, whatever the grain and
// however many callers share the workers at once.
TEST(KernelThreads, EachIndexOnceFromConcurrentCallers) {
  const int saved = at::get_num_threads();
  at::set_num_threads(2);
  for (const int64_t grain : {1, 7, 1000, 5000}) {
    std::vector<std::atomic<int>> seen(4000);
    kernel_parallel_for(0, 4000, grain, [&](int64_t begin, int64_t end) {
      ASSERT_LE(end - begin, 4000);
      for (int64_t i = begin; i < end; ++i) seen[static_cast<size_t>(i)]++;
    });
    for (size_t i = 0; i < seen.size(); ++i)
      ASSERT_EQ(seen[i].load(), 1) << i << ", grain " << grain;
  }
  // Four threads calling at once, many times: the ones that find the
  // workers busy run on their own; none loses or repeats a chunk.
  std::vector<std::thread> callers;
  std::atomic<int64_t> wrong{0};
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      for (int round = 0; round < 300; ++round) {
        std::vector<int> counts(static_cast<size_t>(100 + t));
        kernel_parallel_for(0, 100 + t, 3, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) counts[static_cast<size_t>(i)]++;
        });
        for (const int c : counts) wrong += c != 1;
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(wrong.load(), 0);
  // An empty range calls nothing.
  kernel_parallel_for(5, 5, 1, [](int64_t, int64_t) { FAIL() << "called on an empty range"; });
  at::set_num_threads(saved);
}

TEST(PackedLinear, EqualsLinearForEveryRowCountAndWidth) {
  c10::InferenceMode inference;
  at::manual_seed(3);
  // Widths around the panel (16) and the pass (512); row counts around the
  // tiles' blocks of 8, 6 and 2, up to a prefill's.
  for (const int64_t out : {1, 16, 37, 48, 100}) {
    for (const int64_t in : {1, 13, 64, 771}) {
      const at::Tensor plain = at::randn({out, in}), bias = at::randn({out});
      const PackedWeight w = pack_weight(plain);
      ASSERT_TRUE(at::equal(unpack_weight(w), plain));
      for (const int64_t rows : {1, 2, 5, 7, 8, 9, 16, 23, 70}) {
        const at::Tensor x = at::randn({rows, 1, in});
        const at::Tensor expected = at::linear(x, plain, bias);
        // Long rows round differently from BLAS; compare relative to their size.
        const double tolerance = 1e-5 * std::sqrt(static_cast<double>(in)) * 4;
        EXPECT_LT(max_abs_diff(packed_linear(x, w, bias), expected), tolerance)
            << rows << " rows, " << out << " x " << in;
        EXPECT_LT(max_abs_diff(packed_linear(x, w), at::linear(x, plain)), tolerance);
      }
    }
  }
}

TEST(PackedLinear, PacksIntoGivenStorageAndUnpacksExactly) {
  at::manual_seed(4);
  const at::Tensor plain = at::randn({21, 9});
  const at::Tensor arena = at::full({packed_numel(21, 9) + 5}, 7.0f);
  const PackedWeight w = pack_weight(plain, arena);
  EXPECT_EQ(w.panels.data_ptr<float>(), arena.data_ptr<float>());
  EXPECT_EQ(w.panels.sizes(), (std::vector<int64_t>{2, 9, kPanelWidth}));
  EXPECT_TRUE(at::equal(unpack_weight(w), plain));
  // The padding past output 21 is zero, the arena past the panels untouched.
  EXPECT_EQ(w.panels[1].narrow(1, 5, 11).abs().max().item<float>(), 0.0f);
  EXPECT_EQ(arena[packed_numel(21, 9)].item<float>(), 7.0f);
  // No input features: every output is an empty sum.
  EXPECT_TRUE(at::equal(packed_linear(at::randn({3, 0}), pack_weight(at::randn({5, 0}))),
                        at::zeros({3, 5})));
  // A non-contiguous input is read by its values.
  const at::Tensor wide = at::randn({3, 20});
  EXPECT_LT(
      max_abs_diff(packed_linear(wide.narrow(1, 4, 9), w), at::linear(wide.narrow(1, 4, 9), plain)),
      1e-4);
}

TEST(PackedLinear, RefusesWhatItCannotPackOrMultiply) {
  EXPECT_THROW(pack_weight(at::randn({4, 8}, at::kDouble)), std::invalid_argument);
  EXPECT_THROW(pack_weight(at::randn({4, 8, 2})), std::invalid_argument);
  const PackedWeight w = pack_weight(at::randn({4, 8}));
  try {
    packed_linear(at::randn({2, 7}), w);
    FAIL() << "a mismatched input was multiplied";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[4, 8]"), std::string::npos) << e.what();
  }
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
  const at::Tensor plain = layer->weight.clone();
  EXPECT_LT(max_abs_diff(layer->forward(x, {5, 0}).narrow(0, 0, 1),
                         at::linear(x.narrow(0, 0, 1), plain, layer->bias)),
            1e-4);
  // Packed, the layer computes the same and releases its [out, in] copy.
  const at::Tensor before = layer->forward(x, {5, 0});
  layer->use_packed(pack_weight(layer->weight));
  EXPECT_EQ(layer->weight.numel(), 0);
  EXPECT_LT(max_abs_diff(layer->forward(x, {5, 0}), before), 1e-5);
  EXPECT_TRUE(at::allclose(layer->merged_weight(0),
                           plain + at::matmul(layer->adapter(0).b, layer->adapter(0).a) * 2.0));
}

}  // namespace
}  // namespace vitrine::models
