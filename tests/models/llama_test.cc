// The Llama module against the Hugging Face transformers reference outputs
// in ../shared/fixtures/hf-llama (and the stories260K checkpoint).
#include "models/llama.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>

#include "models/safetensors.h"
#include "tests/support/layout_param.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tensors.h"

namespace vitrine::models {
namespace {

namespace fs = std::filesystem;
using testing::max_abs_diff;
using testing::read_json;
using testing::shared_path;

constexpr double kTolerance = 1e-4;

at::Tensor to_tensor(const nlohmann::json& values) {
  return at::tensor(values.get<std::vector<float>>());
}

// Each fixture in both weight layouts: as the checkpoint has them and packed
// for inference.
class LlamaFixture : public ::testing::TestWithParam<std::tuple<std::string, WeightLayout>> {
 protected:
  fs::path dir() const { return shared_path("fixtures/hf-llama/" + std::get<0>(GetParam())); }
  LlamaForCausalLM load() const {
    LlamaForCausalLM model = load_llama(dir(), "cpu", std::get<1>(GetParam()));
    EXPECT_EQ(model->packed(), std::get<1>(GetParam()) == WeightLayout::kPacked);
    return model;
  }
};

TEST_P(LlamaFixture, LogitsHiddenStatesAndGreedyMatchTransformers) {
  const fs::path dir = this->dir();
  if (!fs::exists(dir))
    GTEST_SKIP() << dir << " not found (../shared/fixtures is not beside this checkout)";
  LlamaForCausalLM model = load();
  const auto expected = read_json(dir / "expected.json");
  at::NoGradGuard no_grad;
  for (const auto& seq : expected["sequences"]) {
    const auto ids = seq["ids"].get<std::vector<int64_t>>();
    HiddenStates hidden;
    const at::Tensor logits =
        model->forward(at::tensor(ids).unsqueeze(0), nullptr, {}, &hidden);  // [1, n, vocab]
    const at::Tensor last = logits[0][static_cast<int64_t>(ids.size()) - 1];
    EXPECT_LT(max_abs_diff(last, to_tensor(seq["logits"])), kTolerance) << seq["name"];
    ASSERT_EQ(hidden.states.size(), seq["hidden_last"].size());
    for (size_t i = 0; i < hidden.states.size(); ++i) {
      const at::Tensor h = hidden.states[i][0][static_cast<int64_t>(ids.size()) - 1];
      EXPECT_LT(max_abs_diff(h, to_tensor(seq["hidden_last"][i])), kTolerance)
          << seq["name"] << " hidden " << i;
    }
    const at::Tensor pre = hidden.last_layer_prenorm[0][static_cast<int64_t>(ids.size()) - 1];
    EXPECT_LT(max_abs_diff(pre, to_tensor(seq["last_layer_output_prenorm"])), kTolerance);
    EXPECT_EQ(greedy_generate(model, ids, 16), seq["greedy"].get<std::vector<int64_t>>())
        << seq["name"];
  }
}

TEST_P(LlamaFixture, IncrementalDecodingEqualsAFullForward) {
  if (!fs::exists(dir())) GTEST_SKIP() << dir() << " not found";
  LlamaForCausalLM model = load();
  at::NoGradGuard no_grad;
  const at::Tensor ids =
      at::randint(3, model->config().vocab_size, {2, 24}, at::TensorOptions().dtype(at::kLong));
  const at::Tensor full = model->forward(ids);  // [2, 24, vocab]
  // Reserved up front (written in place) and grown on demand (10 -> 20 -> 40).
  for (const int64_t reserve : {24, 0}) {
    KvCache cache;
    cache.reserve(reserve);
    model->forward(ids.narrow(1, 0, 10), &cache);
    std::vector<at::Tensor> steps;
    for (int64_t t = 10; t < 24; ++t) steps.push_back(model->forward(ids.narrow(1, t, 1), &cache));
    EXPECT_EQ(cache.length, 24);
    EXPECT_EQ(cache.capacity(), reserve > 0 ? 24 : 40);
    EXPECT_LT(max_abs_diff(at::cat(steps, 1), full.narrow(1, 10, 14)), 1e-4)
        << "reserve " << reserve;
  }
  EXPECT_LT(max_abs_diff(model->forward_last(ids), full.select(1, 23)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    HfLlama, LlamaFixture,
    ::testing::Combine(::testing::Values("mha-untied", "gqa-tied", "llama3-rope"),
                       ::testing::Values(WeightLayout::kCheckpoint, WeightLayout::kPacked)),
    [](const auto& info) { return testing::layout_param_name(info.param); });

// Packed weights are for inference: what needs the [out, in] ones refuses
// them by name, and the weights' memory is the panels alone; saving unpacks.
TEST(Llama, APackedModelRefusesTrainingAndMergingAndSavesItsWeights) {
  const fs::path dir = shared_path("fixtures/hf-llama/mha-untied");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  LlamaForCausalLM model = load_llama(dir, "cpu", WeightLayout::kPacked);
  for (auto& [path, projection] : model->projections()) {
    EXPECT_TRUE(projection->packed()) << path;
    EXPECT_EQ(projection->weight.numel(), 0) << path << ": the [out, in] copy is released";
  }
  EXPECT_EQ(model->lm_head->weight.numel(), 0);
  // With tied embeddings the table is read from the head's panels, not kept twice.
  const fs::path tied = shared_path("fixtures/hf-llama/gqa-tied");
  ASSERT_TRUE(fs::exists(tied));
  EXPECT_EQ(load_llama(tied, "cpu", WeightLayout::kPacked)->model->embed_tokens->weight.numel(), 0);
  const at::Tensor x = at::randn({1, 2, model->config().hidden_size}).requires_grad_();
  auto q = model->projections().front().second;
  EXPECT_THROW(q->forward(x), std::logic_error);
  // Saving writes the checkpoint's weights back from the panels.
  testing::TempDir tmp;
  save_llama(model, dir, tmp / "out");
  const SafetensorsFile saved = SafetensorsFile::open(tmp / "out" / "model.safetensors");
  const SafetensorsFile original = SafetensorsFile::open(dir / "model.safetensors");
  for (const std::string& name : original.names()) {
    EXPECT_TRUE(at::equal(saved.get(name), original.get(name))) << name;
  }
}

TEST(Llama, Stories260KMatchesItsReference) {
  const fs::path dir = shared_path("models/stories260K-hf");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  const auto reference = read_json(dir / "reference.json");
  ASSERT_EQ(reference["sequences"].size(), 3u);
  for (const WeightLayout layout : {WeightLayout::kCheckpoint, WeightLayout::kPacked}) {
    LlamaForCausalLM model = load_llama(dir, "cpu", layout);
    for (const auto& seq : reference["sequences"]) {
      const auto ids = seq["ids"].get<std::vector<int64_t>>();
      at::NoGradGuard no_grad;
      const at::Tensor logits = model->forward(at::tensor(ids).unsqueeze(0));
      EXPECT_LT(
          max_abs_diff(logits[0][static_cast<int64_t>(ids.size()) - 1], to_tensor(seq["logits"])),
          kTolerance)
          << seq["prompt"] << (model->packed() ? " (packed)" : "");
      EXPECT_EQ(greedy_generate(model, ids, 30), seq["greedy_ids"].get<std::vector<int64_t>>())
          << seq["prompt"] << (model->packed() ? " (packed)" : "");
    }
  }
}

TEST(Llama, MissingTensorIsAClearError) {
  const fs::path dir = shared_path("fixtures/hf-llama/gqa-tied");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  testing::TempDir tmp;
  // A config that promises an lm_head the tied checkpoint does not have.
  auto config = read_json(dir / "config.json");
  config["tie_word_embeddings"] = false;
  testing::write_file(tmp / "config.json", config.dump());
  fs::copy_file(dir / "model.safetensors", tmp / "model.safetensors");
  try {
    load_llama(tmp.path());
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("lm_head.weight"), std::string::npos) << e.what();
  }
}

TEST(Llama, NonFiniteBaseWeightsAreRefusedNamingTheTensor) {
  const fs::path dir = shared_path("fixtures/hf-llama/gqa-tied");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  testing::TempDir tmp;
  fs::copy_file(dir / "config.json", tmp / "config.json");
  const SafetensorsFile file = SafetensorsFile::open(dir / "model.safetensors");
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const std::string& name : file.names()) tensors.emplace_back(name, file.get(name).clone());
  const std::string poisoned = "model.layers.0.mlp.down_proj.weight";
  for (auto& [name, t] : tensors) {
    if (name == poisoned) t.view(-1)[7] = -std::numeric_limits<float>::infinity();
  }
  save_safetensors(tmp / "model.safetensors", tensors);
  for (const auto& [layout, dtype] : {std::pair{WeightLayout::kCheckpoint, BaseDtype::kF32},
                                      std::pair{WeightLayout::kPacked, BaseDtype::kF32},
                                      std::pair{WeightLayout::kPacked, BaseDtype::kInt8}}) {
    try {
      load_llama(tmp.path(), "cpu", layout, dtype);
      ADD_FAILURE() << "a checkpoint holding -Inf was loaded";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(poisoned), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace vitrine::models

namespace vitrine::models {
namespace {

TEST(Llama, PackedExamplesComputeWhatEachDoesAlone) {
  const fs::path dir = shared_path("fixtures/hf-llama/gqa-tied");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  LlamaForCausalLM model = load_llama(dir);
  at::NoGradGuard no_grad;
  const auto ids = [&](int64_t n) {
    return at::randint(3, model->config().vocab_size, {1, n}, at::TensorOptions().dtype(at::kLong));
  };
  const at::Tensor a = ids(7), b = ids(5), c = ids(9), pad = at::zeros({1, 3}, at::kLong);
  // Row 0: a, b, then padding; row 1: c, then a.
  const at::Tensor row0 = at::cat({a, b, pad}, 1), row1 = at::cat({c, a}, 1);  // 15 and 16
  const at::Tensor packed = at::cat({at::cat({row0, at::zeros({1, 1}, at::kLong)}, 1), row1}, 0);
  const at::Tensor segments =
      at::tensor(std::vector<int64_t>{0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 9, 9, 9, 9,  //
                                      4, 4, 4, 4, 4, 4, 4, 4, 4, 7, 7, 7, 7, 7, 7, 7})
          .view({2, 16});
  const at::Tensor logits = model->forward_packed(packed, segments);  // [2, 16, vocab]
  EXPECT_LT(max_abs_diff(logits[0].narrow(0, 0, 7), model->forward(a)[0]), 1e-4);
  EXPECT_LT(max_abs_diff(logits[0].narrow(0, 7, 5), model->forward(b)[0]), 1e-4);
  EXPECT_LT(max_abs_diff(logits[1].narrow(0, 0, 9), model->forward(c)[0]), 1e-4);
  EXPECT_LT(max_abs_diff(logits[1].narrow(0, 9, 7), model->forward(a)[0]), 1e-4);
}

}  // namespace
}  // namespace vitrine::models
