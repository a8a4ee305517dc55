// The trainer replays PEFT's training run of the fixture step by step:
// ../shared/fixtures/hf-llama/mha-untied/lora-replay (10 AdamW steps from
// PEFT's initial adapter, every hyperparameter in replay.json).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/safetensors.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tensors.h"
#include "training/lora_trainer.h"

namespace vitrine::training {
namespace {

namespace fs = std::filesystem;
using testing::max_abs_diff;
using testing::shared_path;

class LoraReplay : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = shared_path("fixtures/hf-llama/mha-untied");
    dir_ = base_ / "lora-replay";
    if (!fs::exists(dir_)) GTEST_SKIP() << dir_ << " not found (../shared/fixtures is absent)";
    std::ifstream in(dir_ / "replay.json");
    replay_ = nlohmann::json::parse(in);
    std::ifstream data(dir_ / "data.jsonl");
    for (std::string line; std::getline(data, line);) {
      lines_.push_back(nlohmann::json::parse(line)["input_ids"].get<std::vector<int64_t>>());
    }
  }

  // Step s (1-based) takes lines ((s-1)*2 + i) mod 8, i = 0, 1; labels = ids.
  Batch batch(int step) const {
    std::vector<int64_t> flat;
    for (int i = 0; i < 2; ++i) {
      const auto& ids = lines_[static_cast<size_t>(((step - 1) * 2 + i) % 8)];
      flat.insert(flat.end(), ids.begin(), ids.end());
    }
    const at::Tensor ids = at::tensor(flat).view({2, -1});
    return Batch{ids, ids.clone()};
  }

  OptimizerConfig optimizer() const {
    const auto& o = replay_["optimizer"];
    OptimizerConfig c;
    c.learning_rate = o["lr"].get<double>();
    c.beta1 = o["betas"][0].get<double>();
    c.beta2 = o["betas"][1].get<double>();
    c.eps = o["eps"].get<double>();
    c.weight_decay = o["weight_decay"].get<double>();
    c.max_grad_norm = 0;  // no clipping
    c.schedule = "constant";
    return c;
  }

  fs::path base_, dir_;
  nlohmann::json replay_;
  std::vector<std::vector<int64_t>> lines_;
};

TEST_F(LoraReplay, LossesGradientsAndFinalAdapterMatchPeft) {
  models::LlamaForCausalLM model = models::load_llama(base_);
  const models::PeftAdapter init = models::load_peft_adapter(dir_ / "init");
  ASSERT_EQ(init.config.r, replay_["lora"]["r"].get<int64_t>());
  LoraTrainer trainer(model, make_trainable(model, init, 0), optimizer());

  const auto& steps = replay_["steps"];
  ASSERT_EQ(steps.size(), 10u);
  const models::SafetensorsFile grads1 =
      models::SafetensorsFile::open(dir_ / "grads_step1.safetensors");
  for (int s = 1; s <= 10; ++s) {
    const StepResult r = trainer.step({batch(s)});
    const double want = steps[static_cast<size_t>(s - 1)]["loss"].get<double>();
    EXPECT_NEAR(r.loss, want, 1e-5) << "step " << s;
    EXPECT_NEAR(r.loss, want, 1e-4 * std::abs(want)) << "step " << s;
    EXPECT_NEAR(r.grad_norm, steps[static_cast<size_t>(s - 1)]["grad_norm"].get<double>(), 1e-5)
        << "step " << s;
    EXPECT_EQ(r.targets, 62);
    if (s == 1) {
      // The gradients PEFT computed at step 1, tensor by tensor (checked
      // after the step, which leaves .grad in place).
      for (const auto& [name, t] : trainer.adapter().parameters) {
        ASSERT_TRUE(grads1.contains(name)) << name;
        EXPECT_LT(max_abs_diff(t.grad(), grads1.get(name)), 1e-6) << name;
      }
    }
  }

  // The final adapter: its tensors and its logits on the len17 sequence.
  const models::PeftAdapter final_want = models::load_peft_adapter(dir_ / "final");
  const models::PeftAdapter final_got = snapshot(trainer.adapter());
  ASSERT_EQ(final_got.modules.size(), final_want.modules.size());
  for (const auto& [path, w] : final_want.modules) {
    EXPECT_LT(max_abs_diff(final_got.modules.at(path).a, w.a), 1e-4) << path;
    EXPECT_LT(max_abs_diff(final_got.modules.at(path).b, w.b), 1e-4) << path;
  }
  const auto& seq = replay_["final"]["sequences"][0];
  at::NoGradGuard no_grad;
  model->eval();
  const at::Tensor ids = at::tensor(seq["ids"].get<std::vector<int64_t>>()).unsqueeze(0);
  const at::Tensor logits = model->forward_last(ids, nullptr, {0})[0];
  const at::Tensor want = at::tensor(seq["logits"].get<std::vector<float>>());
  EXPECT_LT(max_abs_diff(logits, want), 1e-4);
}

TEST_F(LoraReplay, AccumulatingMicroBatchesIsTheSameStep) {
  const models::PeftAdapter init = models::load_peft_adapter(dir_ / "init");
  models::LlamaForCausalLM whole_model = models::load_llama(base_);
  models::LlamaForCausalLM split_model = models::load_llama(base_);
  LoraTrainer whole(whole_model, make_trainable(whole_model, init, 0), optimizer());
  LoraTrainer split(split_model, make_trainable(split_model, init, 0), optimizer());
  for (int s = 1; s <= 3; ++s) {
    const Batch b = batch(s);
    const StepResult one = whole.step({b});
    const StepResult two = split.step({Batch{b.ids.narrow(0, 0, 1), b.labels.narrow(0, 0, 1)},
                                       Batch{b.ids.narrow(0, 1, 1), b.labels.narrow(0, 1, 1)}});
    EXPECT_NEAR(one.loss, two.loss, 1e-6) << "step " << s;
    EXPECT_NEAR(one.grad_norm, two.grad_norm, 1e-6) << "step " << s;
  }
  const auto a = whole.adapter().tensors(), b = split.adapter().tensors();
  // Adam divides by the gradient scale, so float rounding of the two
  // summation orders shows at about 1e-6 after three steps at lr 1e-2.
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LT(max_abs_diff(a[i], b[i]), 2e-5);
}

TEST(Schedule, FollowsTransformersWarmupAndDecay) {
  OptimizerConfig c;
  c.warmup_steps = 10;
  c.total_steps = 110;
  c.schedule = "cosine";
  EXPECT_DOUBLE_EQ(schedule_factor(c, 0), 0.0);  // transformers: the first warmup step is at 0
  EXPECT_DOUBLE_EQ(schedule_factor(c, 5), 0.5);
  EXPECT_DOUBLE_EQ(schedule_factor(c, 10), 1.0);
  EXPECT_NEAR(schedule_factor(c, 60), 0.5, 1e-12);  // half-way through the cosine
  EXPECT_NEAR(schedule_factor(c, 110), 0.0, 1e-12);
  c.schedule = "linear";
  EXPECT_NEAR(schedule_factor(c, 35), 0.75, 1e-12);
  c.min_lr_ratio = 0.1;
  EXPECT_NEAR(schedule_factor(c, 110), 0.1, 1e-12);
  c.schedule = "constant";
  EXPECT_DOUBLE_EQ(schedule_factor(c, 500), 1.0);
  c.schedule = "exponential";
  EXPECT_THROW(schedule_factor(c, 20), std::invalid_argument);
}

}  // namespace
}  // namespace vitrine::training
