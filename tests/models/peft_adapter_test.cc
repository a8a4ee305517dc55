// PEFT adapters against the transformers + PEFT reference outputs.
#include "models/peft_adapter.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "models/safetensors.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tensors.h"

namespace vitrine::models {
namespace {

namespace fs = std::filesystem;
using testing::max_abs_diff;
using testing::read_json;
using testing::shared_path;

at::Tensor last_logits(LlamaForCausalLM& model, const std::vector<int64_t>& ids,
                       const RowAdapters& rows = {}) {
  at::NoGradGuard no_grad;
  const at::Tensor logits = model->forward(at::tensor(ids).unsqueeze(0), nullptr, rows);
  return logits[0][static_cast<int64_t>(ids.size()) - 1];
}

class PeftFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(PeftFixture, UnmergedAndMergedMatchPeft) {
  const fs::path dir = shared_path("fixtures/hf-llama/" + GetParam());
  if (!fs::exists(dir))
    GTEST_SKIP() << dir << " not found (../shared/fixtures is not beside this checkout)";
  const auto expected = read_json(dir / "expected.json")["adapter"];
  LlamaForCausalLM model = load_llama(dir);
  const PeftAdapter adapter = load_peft_adapter(dir / "adapter");
  EXPECT_EQ(adapter.config.r, expected["r"].get<int64_t>());
  EXPECT_DOUBLE_EQ(adapter.config.scaling(), expected["scaling"].get<double>());
  attach_adapter(model, adapter, 0);
  for (const auto& seq : expected["sequences"]) {
    const auto ids = seq["ids"].get<std::vector<int64_t>>();
    EXPECT_LT(max_abs_diff(last_logits(model, ids, {0}),
                           at::tensor(seq["logits"].get<std::vector<float>>())),
              1e-4)
        << seq["name"];
    EXPECT_EQ(greedy_generate(model, ids, 16, 0), seq["greedy"].get<std::vector<int64_t>>())
        << seq["name"];
  }
  // Packed for inference, the same adapter on panels gives the same; merging
  // needs the [out, in] weights and is refused.
  LlamaForCausalLM packed = load_llama(dir, "cpu", WeightLayout::kPacked);
  attach_adapter(packed, adapter, 0);
  for (const auto& seq : expected["sequences"]) {
    const auto ids = seq["ids"].get<std::vector<int64_t>>();
    EXPECT_LT(max_abs_diff(last_logits(packed, ids, {0}),
                           at::tensor(seq["logits"].get<std::vector<float>>())),
              1e-4)
        << "packed " << seq["name"];
    EXPECT_EQ(greedy_generate(packed, ids, 16, 0), seq["greedy"].get<std::vector<int64_t>>())
        << "packed " << seq["name"];
  }
  EXPECT_THROW(merge_adapter(packed, 0), std::logic_error);
  merge_adapter(model, 0);
  for (const auto& seq : expected["sequences"]) {
    const auto ids = seq["ids"].get<std::vector<int64_t>>();
    EXPECT_LT(
        max_abs_diff(last_logits(model, ids), at::tensor(seq["logits"].get<std::vector<float>>())),
        1e-4)
        << "merged " << seq["name"];
    EXPECT_EQ(greedy_generate(model, ids, 16), seq["greedy"].get<std::vector<int64_t>>())
        << "merged " << seq["name"];
  }
}

TEST_P(PeftFixture, SaveLoadRoundTripKeepsPeftKeysAndValues) {
  const fs::path dir = shared_path("fixtures/hf-llama/" + GetParam());
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  testing::TempDir tmp;
  const PeftAdapter adapter = load_peft_adapter(dir / "adapter");
  save_peft_adapter(tmp / "saved", adapter);
  const auto original = SafetensorsFile::open(dir / "adapter" / "adapter_model.safetensors");
  const auto saved = SafetensorsFile::open(tmp / "saved" / "adapter_model.safetensors");
  ASSERT_EQ(saved.names(), original.names());
  for (const auto& name : original.names())
    EXPECT_TRUE(original.get(name).equal(saved.get(name))) << name;
  const auto a = read_json(dir / "adapter" / "adapter_config.json");
  const auto b = read_json(tmp / "saved" / "adapter_config.json");
  for (const auto& [key, value] : a.items()) {
    ASSERT_TRUE(b.contains(key)) << "PEFT field " << key << " missing";
    if (key == "target_modules") continue;  // a set: PEFT writes it in arbitrary order
    EXPECT_EQ(b[key], value) << key;
  }
  auto ta = a["target_modules"].get<std::vector<std::string>>(),
       tb = b["target_modules"].get<std::vector<std::string>>();
  std::sort(ta.begin(), ta.end());
  EXPECT_EQ(ta, tb);
}

INSTANTIATE_TEST_SUITE_P(HfLlama, PeftFixture, ::testing::Values("mha-untied", "llama3-rope"));

TEST(Peft, ZeroBEqualsTheBaseAndMixedBatchesEqualEachRowAlone) {
  const fs::path dir = shared_path("fixtures/hf-llama/mha-untied");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  LlamaForCausalLM model = load_llama(dir);
  PeftAdapter adapter = load_peft_adapter(dir / "adapter");
  PeftAdapter zero = adapter;
  for (auto& [path, w] : zero.modules) w.b = at::zeros_like(w.b);
  attach_adapter(model, adapter, 0);
  attach_adapter(model, zero, 1);
  at::NoGradGuard no_grad;
  const at::Tensor ids = at::randint(3, 512, {3, 12}, at::TensorOptions().dtype(at::kLong));
  const at::Tensor base = model->forward(ids);
  EXPECT_LT(max_abs_diff(model->forward(ids, nullptr, {1, 1, 1}), base), 1e-6);
  // One batch: row 0 adapter, row 1 base, row 2 zero adapter.
  const at::Tensor mixed = model->forward(ids, nullptr, {0, -1, 1});
  const at::Tensor alone0 = model->forward(ids.narrow(0, 0, 1), nullptr, {0});
  EXPECT_LT(max_abs_diff(mixed[0], alone0[0]), 1e-5);
  EXPECT_LT(max_abs_diff(mixed[1], base[1]), 1e-5);
  EXPECT_LT(max_abs_diff(mixed[2], base[2]), 1e-5);
  EXPECT_GT(max_abs_diff(mixed[0], base[0]), 1e-2);  // the adapter does change the output
}

TEST(Peft, AdapterForAnotherBaseIsRefusedAndLeavesTheModelAlone) {
  const fs::path dir = shared_path("fixtures/hf-llama");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  LlamaForCausalLM model = load_llama(dir / "gqa-tied");
  const PeftAdapter adapter = load_peft_adapter(dir / "mha-untied" / "adapter");
  try {
    attach_adapter(model, adapter, 0);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("another base"), std::string::npos) << e.what();
  }
  for (auto& [path, module] : model->projections()) EXPECT_FALSE(module->has_adapter(0)) << path;
}

TEST(Peft, MergedModelSavesAsAHuggingFaceDirectory) {
  const fs::path dir = shared_path("fixtures/hf-llama/mha-untied");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  const auto expected = read_json(dir / "expected.json")["adapter"]["sequences"][1];
  testing::TempDir tmp;
  {
    LlamaForCausalLM model = load_llama(dir);
    attach_adapter(model, load_peft_adapter(dir / "adapter"), 0);
    merge_adapter(model, 0);
    save_llama(model, dir, tmp / "merged");
  }
  // The saved directory loads as a plain checkpoint that behaves as base + adapter.
  LlamaForCausalLM merged = load_llama(tmp / "merged");
  const auto ids = expected["ids"].get<std::vector<int64_t>>();
  EXPECT_LT(max_abs_diff(last_logits(merged, ids),
                         at::tensor(expected["logits"].get<std::vector<float>>())),
            1e-4);
  EXPECT_EQ(SafetensorsFile::open(tmp / "merged" / "model.safetensors").names(),
            SafetensorsFile::open(dir / "model.safetensors").names());
}

TEST(Peft, NonLoraAdaptersAreRefusedByName) {
  const fs::path dir = shared_path("fixtures/hf-llama/mha-untied/adapter");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  testing::TempDir tmp;
  fs::copy(dir, tmp / "a");
  auto config = read_json(dir / "adapter_config.json");
  config["use_dora"] = true;
  testing::write_file(tmp / "a" / "adapter_config.json", config.dump());
  try {
    load_peft_adapter(tmp / "a");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("DoRA"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_peft_adapter(tmp / "missing"), std::runtime_error);
}

TEST(Peft, NonFiniteWeightsAreRefusedNamingTheTensor) {
  const fs::path dir = shared_path("fixtures/hf-llama/mha-untied/adapter");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  for (const float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    testing::TempDir tmp;
    fs::copy(dir, tmp / "a");
    const SafetensorsFile file = SafetensorsFile::open(dir / "adapter_model.safetensors");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const std::string& name : file.names()) tensors.emplace_back(name, file.get(name).clone());
    const std::string poisoned = tensors.back().first;
    tensors.back().second.view(-1)[3] = bad;
    save_safetensors(tmp / "a" / "adapter_model.safetensors", tensors);
    try {
      load_peft_adapter(tmp / "a");
      ADD_FAILURE() << "an adapter holding " << bad << " was loaded";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(poisoned), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
    }
  }
}

TEST(Peft, APickleAdapterIsRefusedSayingHowToConvertIt) {
  const fs::path dir = shared_path("fixtures/hf-llama/mha-untied/adapter");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  testing::TempDir tmp;
  fs::create_directories(tmp / "a");
  fs::copy_file(dir / "adapter_config.json", tmp / "a" / "adapter_config.json");
  testing::write_file(tmp / "a" / "adapter_model.bin", "PK\x03\x04 not read");
  try {
    load_peft_adapter(tmp / "a");
    FAIL() << "a .bin adapter was accepted";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("adapter_model.bin"), std::string::npos) << what;
    EXPECT_NE(what.find("safe_serialization=True"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace vitrine::models
