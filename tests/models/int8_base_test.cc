// A frozen base held as int8 (BaseDtype::kInt8), against the float32 model
// holding the dequantized weights (q·scale; the untied embedding table
// rounded to bf16, as the int8 base keeps it): decode steps round the
// activations to int16 steps (the VNNI build) or multiply in float32 (the
// widening ones) and equal it closely, prefills of many rows round the
// activations to bf16 and stay close; LoRA adapters stay
// float32 and unmerged, one batch mixing them; int8 is for serving only.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "models/llama.h"
#include "models/peft_adapter.h"
#include "tests/support/expect_error.h"
#include "tests/support/llama_fixtures.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tensors.h"

namespace vitrine::models {
namespace {

namespace fs = std::filesystem;
using testing::max_abs_diff;
using testing::shared_path;

using testing::hf_llama_fixture;
using testing::kHfLlamaFixtures;
using testing::sample_ids;

at::Tensor dequantized(const at::Tensor& w) {
  return dequantize_weight_int8(quantize_weight_int8(w));
}

// The float32 model of `dir` with the values an int8 base multiplies by.
LlamaForCausalLM dequantized_float32_model(const fs::path& dir) {
  LlamaForCausalLM model = load_llama(dir, "cpu", WeightLayout::kCheckpoint, BaseDtype::kF32);
  at::NoGradGuard no_grad;
  for (auto& [path, projection] : model->projections()) {
    projection->weight.copy_(dequantized(projection->weight));
  }
  at::Tensor& table = model->model->embed_tokens->weight;
  if (model->lm_head) {
    model->lm_head->weight.copy_(dequantized(model->lm_head->weight));
    table.copy_(table.to(at::kBFloat16).to(at::kFloat));
  } else {
    table.copy_(dequantized(table));  // tied: read from the head's int8 panels
  }
  return model;
}

TEST(Int8Base, LogitsEqualFloat32OnTheDequantizedWeights) {
  SKIP_WITHOUT_HF_LLAMA_FIXTURES();
  for (const std::string& name : kHfLlamaFixtures) {
    LlamaForCausalLM int8 =
        load_llama(hf_llama_fixture(name), "cpu", WeightLayout::kPacked, BaseDtype::kInt8);
    ASSERT_TRUE(int8->base_int8()) << name;
    EXPECT_EQ(weights_of(int8), BaseDtype::kInt8);
    LlamaForCausalLM reference = dequantized_float32_model(hf_llama_fixture(name));
    at::NoGradGuard no_grad;
    // Fewer rows than kInt8DotRows (2 × 7): the VNNI kernel (activations in
    // int16 steps of 2^-15 of each row's largest) or the widening one (float32).
    const at::Tensor few = sample_ids(reference, 2, 7);
    const at::Tensor few_want = reference->forward(few), few_got = int8->forward(few);
    std::printf("[ int8 decode ] %s (%s): logit error max %.2e, mean %.2e, range %.2f\n",
                name.c_str(),
                int8_path_available(Int8Path::kVnniAvx512) ? "vnni-avx512" : "widening",
                max_abs_diff(few_got, few_want), (few_got - few_want).abs().mean().item<double>(),
                (few_want.max() - few_want.min()).item<double>());
    EXPECT_LT(max_abs_diff(few_got, few_want), 1e-4) << name;
    // A prefill of 42 rows: the bf16-dot kernel where the CPU has it, which
    // rounds the activations to bf16; the error is measured, not hidden.
    const at::Tensor ids = sample_ids(reference, 2, 21);
    const at::Tensor want = reference->forward(ids), got = int8->forward(ids);
    const double range = (want.max() - want.min()).item<double>();
    std::printf("[ int8 prefill ] %s: logit error / range max %.2e, mean %.2e\n", name.c_str(),
                max_abs_diff(got, want) / range, (got - want).abs().mean().item<double>() / range);
    EXPECT_LT(max_abs_diff(got, want) / range, 2e-2) << name;
  }
}

TEST(Int8Base, HoldsOnlyInt8PanelsAndABf16Table) {
  SKIP_WITHOUT_HF_LLAMA_FIXTURES();
  for (const std::string name : {"mha-untied", "gqa-tied"}) {
    LlamaForCausalLM model =
        load_llama(hf_llama_fixture(name), "cpu", WeightLayout::kPacked, BaseDtype::kInt8);
    EXPECT_TRUE(model->packed());
    for (auto& [path, projection] : model->projections()) {
      EXPECT_TRUE(projection->packed_int8()) << path;
      EXPECT_EQ(projection->weight.numel(), 0) << path;
    }
    const at::Tensor& table = model->model->embed_tokens->weight;
    if (model->lm_head) {
      EXPECT_EQ(model->lm_head->weight.numel(), 0);
      EXPECT_EQ(table.scalar_type(), at::kBFloat16);
    } else {
      EXPECT_EQ(table.numel(), 0) << "tied: the table is read from the head's int8 panels";
    }
  }
}

// LoRA on an int8 base: float32 factors, unmerged; rows on two adapters and
// on none in one batch each compute what they compute alone.
TEST(Int8Base, MixedAdapterBatchesEqualEachRowAlone) {
  SKIP_WITHOUT_HF_LLAMA_FIXTURES();
  LlamaForCausalLM model =
      load_llama(hf_llama_fixture("mha-untied"), "cpu", WeightLayout::kPacked, BaseDtype::kInt8);
  const PeftAdapter adapter = load_peft_adapter(hf_llama_fixture("mha-untied") / "adapter");
  attach_adapter(model, adapter, 0);
  PeftAdapter other = adapter;
  for (auto& [path, w] : other.modules) w.b = w.b * -0.5;
  attach_adapter(model, other, 1);
  at::NoGradGuard no_grad;
  const at::Tensor ids = sample_ids(model, 3, 5);  // 15 rows: the widening kernel throughout
  const RowAdapters rows = {0, 1, -1};
  const at::Tensor mixed = model->forward(ids, nullptr, rows);
  for (int64_t i = 0; i < 3; ++i) {
    const at::Tensor alone = model->forward(ids.narrow(0, i, 1), nullptr, {rows[i]});
    EXPECT_LT(max_abs_diff(mixed.narrow(0, i, 1), alone), 1e-5) << "row " << i;
  }
  // The adapters change the rows (they are applied, not dropped).
  EXPECT_GT(max_abs_diff(mixed.select(0, 0), model->forward(ids.narrow(0, 0, 1)).select(0, 0)),
            1e-3);
}

TEST(Int8Base, IsForServingOnly) {
  SKIP_WITHOUT_HF_LLAMA_FIXTURES();
  testing::expect_throw_naming<std::invalid_argument>(
      [] {
        load_llama(hf_llama_fixture("mha-untied"), "cpu", WeightLayout::kCheckpoint,
                   BaseDtype::kInt8);
      },
      "int8 weights are for serving");
  LlamaForCausalLM model =
      load_llama(hf_llama_fixture("mha-untied"), "cpu", WeightLayout::kPacked, BaseDtype::kInt8);
  const at::Tensor x = at::randn({1, 2, model->config().hidden_size}).requires_grad_();
  EXPECT_THROW(model->projections().front().second->forward(x), std::logic_error);
  attach_adapter(model, load_peft_adapter(hf_llama_fixture("mha-untied") / "adapter"), 0);
  EXPECT_THROW(merge_adapter(model, 0), std::logic_error);
}

}  // namespace
}  // namespace vitrine::models
