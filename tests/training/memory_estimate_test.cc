// The training memory plan: what the estimate counts, when auto turns
// checkpointing on, and that a refusal says what to change.
#include "training/memory_estimate.h"

#include <gtest/gtest.h>

#include "tests/support/expect_error.h"

namespace vitrine::training {
namespace {

using models::BaseDtype;

// TinyLlama-1.1B's shape.
models::LlamaConfig tinyllama() {
  models::LlamaConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 2048;
  c.intermediate_size = 5632;
  c.num_hidden_layers = 22;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 4;
  c.head_dim = 64;
  return c;
}

const TrainingShape kSeq512{.batch_size = 1,
                            .seq_len = 512,
                            .rank = 8,
                            .target_modules = {"q_proj", "v_proj"},
                            .dropout = true};

constexpr int64_t kGiB = int64_t{1} << 30;

TEST(MemoryEstimate, CountsTheBaseInItsDtypeAndTheActivationsByLayer) {
  const MemoryEstimate bf16 =
      estimate_training_memory(tinyllama(), BaseDtype::kBf16, kSeq512, false);
  const MemoryEstimate f32 = estimate_training_memory(tinyllama(), BaseDtype::kF32, kSeq512, false);
  // 1.10 billion parameters: 2.2 GB in bf16, twice that in float32.
  EXPECT_NEAR(static_cast<double>(bf16.weights) / 2, 1.10e9, 0.02e9);
  EXPECT_NEAR(static_cast<double>(f32.weights) / static_cast<double>(bf16.weights), 2.0, 0.01);
  // LoRA r 8 on q and v: 22 layers x 8 x (2048 + 2048 + 2048 + 256) = 1.13M
  // parameters, with gradient and two moments.
  EXPECT_EQ(bf16.adapter, int64_t{22} * 8 * (4096 + 2048 + 256) * 16);
  // Checkpointing keeps one layer's graph and every layer's input.
  const MemoryEstimate recomputed =
      estimate_training_memory(tinyllama(), BaseDtype::kBf16, kSeq512, true);
  EXPECT_LT(recomputed.activations * 5, bf16.activations);
  EXPECT_GE(recomputed.activations, int64_t{22} * 2048 * 512 * 4);
  // Activations grow with the tokens, and so do the probabilities of the
  // attention's blocks of query rows (a block's rows times the keys).
  TrainingShape longer = kSeq512;
  longer.seq_len = 1024;
  EXPECT_EQ(estimate_training_memory(tinyllama(), BaseDtype::kBf16, longer, false).activations,
            2 * bf16.activations);
}

TEST(MemoryEstimate, AutoRecomputesOnlyWhenItMustAndNeverIsObeyed) {
  const int64_t kept =
      estimate_training_memory(tinyllama(), BaseDtype::kBf16, kSeq512, false).total();
  const int64_t recomputed =
      estimate_training_memory(tinyllama(), BaseDtype::kBf16, kSeq512, true).total();
  ASSERT_LT(recomputed, kept);
  EXPECT_FALSE(plan_training_memory(tinyllama(), BaseDtype::kBf16, kSeq512, Checkpointing::kAuto,
                                    kept + 1, "run")
                   .checkpointing);
  EXPECT_TRUE(plan_training_memory(tinyllama(), BaseDtype::kBf16, kSeq512, Checkpointing::kAuto,
                                   kept - 1, "run")
                  .checkpointing);
  EXPECT_TRUE(
      plan_training_memory(tinyllama(), BaseDtype::kBf16, kSeq512, Checkpointing::kAlways, 0, "run")
          .checkpointing);
  // never, where only recomputation fits: refused, and told so.
  testing::expect_error(
      [&] {
        plan_training_memory(tinyllama(), BaseDtype::kBf16, kSeq512, Checkpointing::kNever,
                             kept - 1, "training adapter 'qa'");
      },
      {"training adapter 'qa' would need about", "activations",
       "set activation_checkpointing: always or auto", "lower max_seq_len (512)"});
}

TEST(MemoryEstimate, ARefusalNamesEveryChangeThatApplies) {
  TrainingShape batch4 = kSeq512;
  batch4.batch_size = 4;
  testing::expect_error(
      [&] {
        plan_training_memory(tinyllama(), BaseDtype::kF32, batch4, Checkpointing::kAuto, 2 * kGiB,
                             "training adapter 'describe'");
      },
      {"more than the 2.0 GiB this machine has free", "lower batch_size (4)",
       "lower max_seq_len (512)", "base_dtype: bf16"});
  testing::expect_throw_naming<std::invalid_argument>(
      [] { parse_checkpointing("sometimes"); },
      "activation_checkpointing 'sometimes': expected auto, always or never");
  EXPECT_GT(available_memory(), 0) << "/proc/meminfo gives MemAvailable on Linux";
}

}  // namespace
}  // namespace vitrine::training
