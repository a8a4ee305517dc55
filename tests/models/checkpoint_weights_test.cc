// Checkpoints as the Hub ships them: one model.safetensors or shards with
// model.safetensors.index.json, F32 / F16 / BF16, mapped rather than read;
// the same weights load the same model whatever the layout, and each way a
// shard set can be damaged is refused naming the file and the tensor.
#include "models/checkpoint_weights.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "models/llama.h"
#include "tests/support/expect_error.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tensors.h"

namespace vitrine::models {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;
using testing::read_json;
using testing::shared_path;
using testing::TempDir;
using Tensors = std::vector<std::pair<std::string, at::Tensor>>;

constexpr int64_t kOneFile = int64_t{1} << 40;

const fs::path& fixture() {
  static const fs::path dir = shared_path("fixtures/hf-llama/mha-untied");
  return dir;
}

#define SKIP_WITHOUT_FIXTURE() \
  if (!fs::exists(fixture())) GTEST_SKIP() << fixture() << " not found (VITRINE_SHARED_DIR)"

// The fixture's tensors in `dtype`, in file order.
Tensors fixture_tensors(at::ScalarType dtype = at::kFloat) {
  const SafetensorsFile file = SafetensorsFile::open(fixture() / "model.safetensors");
  Tensors out;
  for (const std::string& name : file.names()) out.emplace_back(name, file.get(name).to(dtype));
  return out;
}

// A model directory holding `tensors` (sharded above `max_shard_bytes`) and the fixture's config.
fs::path write_model(const fs::path& dir, const Tensors& tensors, int64_t max_shard_bytes) {
  fs::create_directories(dir);
  fs::copy_file(fixture() / "config.json", dir / "config.json",
                fs::copy_options::overwrite_existing);
  save_checkpoint_weights(dir, tensors, max_shard_bytes);
  return dir;
}

std::vector<std::string> shard_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("model-", 0) == 0) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

at::Tensor logits_of(const fs::path& dir, WeightLayout layout = WeightLayout::kCheckpoint) {
  LlamaForCausalLM model = load_llama(dir, "cpu", layout);
  at::NoGradGuard no_grad;
  const at::Tensor ids = at::arange(1, 40, at::kLong).unsqueeze(0);  // [1, 39]
  return model->forward(ids);
}

TEST(CheckpointWeights, ShardsLoadTheSameModelAsOneFileInEveryDtype) {
  SKIP_WITHOUT_FIXTURE();
  TempDir tmp;
  for (const at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    const Tensors tensors = fixture_tensors(dtype);
    const fs::path one = write_model(tmp / "one", tensors, kOneFile);
    const fs::path sharded = write_model(tmp / "sharded", tensors, 120'000);
    EXPECT_FALSE(fs::exists(sharded / kSingleWeightsFile));
    ASSERT_TRUE(fs::exists(sharded / kWeightsIndexFile));
    EXPECT_GE(shard_files(sharded).size(), 3u);
    const CheckpointWeights weights = CheckpointWeights::open(sharded);
    EXPECT_TRUE(weights.sharded());
    EXPECT_EQ(weights.names(), CheckpointWeights::open(one).names());
    EXPECT_EQ(weights.files().size(), shard_files(sharded).size() + 1);  // + the index
    EXPECT_EQ(weights.stored("model.norm.weight").scalar_type(), dtype);
    for (const WeightLayout layout : {WeightLayout::kCheckpoint, WeightLayout::kPacked}) {
      EXPECT_TRUE(at::equal(logits_of(sharded, layout), logits_of(one, layout)));
    }
  }
  // float32 shards hold the fixture's own numbers, bit for bit.
  const fs::path f32 = write_model(tmp / "f32", fixture_tensors(), 150'000);
  EXPECT_TRUE(at::equal(logits_of(f32), logits_of(fixture())));
}

TEST(CheckpointWeights, LoadingReportsTheStoredBytesOfEveryWeightItTakes) {
  SKIP_WITHOUT_FIXTURE();
  TempDir tmp;
  const fs::path sharded = write_model(tmp / "sharded", fixture_tensors(at::kBFloat16), 120'000);
  const CheckpointWeights weights = CheckpointWeights::open(sharded);
  uint64_t stored = 0;  // the untied fixture: the model takes every tensor
  for (const std::string& name : weights.names()) {
    stored += weights.info(name).end - weights.info(name).begin;
  }
  for (const BaseDtype dtype : {BaseDtype::kF32, BaseDtype::kBf16, BaseDtype::kInt8}) {
    SCOPED_TRACE(base_dtype_name(dtype));
    std::vector<std::pair<uint64_t, uint64_t>> calls;
    const LlamaForCausalLM model =
        load_llama(sharded, "cpu", WeightLayout::kPacked, dtype,
                   [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); });
    ASSERT_EQ(calls.size(), model->named_parameters(/*recurse=*/true).size());
    for (size_t i = 0; i < calls.size(); ++i) {
      EXPECT_EQ(calls[i].second, stored);
      if (i > 0) {
        EXPECT_GT(calls[i].first, calls[i - 1].first);
      }
    }
    EXPECT_EQ(calls.back().first, stored);
  }
}

TEST(CheckpointWeights, TheLoadingBarShowsBigCheckpointsOnly) {
  ::testing::internal::CaptureStderr();
  LoadProgress small = loading_bar("loading small");
  small(kLoadBarMinBytes / 4, kLoadBarMinBytes / 2);
  small(kLoadBarMinBytes / 2, kLoadBarMinBytes / 2);
  LoadProgress silent = loading_bar("loading silent", /*enabled=*/false);
  EXPECT_FALSE(silent);
  LoadProgress big = loading_bar("loading big");
  big(uint64_t{3} << 30, uint64_t{6} << 30);
  big(uint64_t{6} << 30, uint64_t{6} << 30);
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.find("loading small"), std::string::npos) << out;
  ASSERT_NE(out.find("loading big"), std::string::npos) << out;
  EXPECT_NE(out.find("100%"), std::string::npos) << out;
  EXPECT_NE(out.find("2 weights"), std::string::npos) << out;
}

TEST(CheckpointWeights, Bf16WeightsAreViewsOfTheMappedFile) {
  SKIP_WITHOUT_FIXTURE();
  TempDir tmp;
  const fs::path dir = write_model(tmp / "bf16", fixture_tensors(at::kBFloat16), 120'000);
  const CheckpointWeights weights = CheckpointWeights::open(dir);
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  const at::Tensor a = weights.stored(name), b = weights.stored(name);
  EXPECT_EQ(a.scalar_type(), at::kBFloat16);
  EXPECT_EQ(a.data_ptr(), b.data_ptr()) << "both borrow the mapping: no copy was made";
  EXPECT_EQ(weights.get(name).scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(weights.get(name), a.to(at::kFloat)));
  EXPECT_EQ(weights.file_of(name).parent_path(), dir);
}

TEST(CheckpointWeights, SavingOneLayoutRemovesTheOther) {
  SKIP_WITHOUT_FIXTURE();
  TempDir tmp;
  const Tensors tensors = fixture_tensors();
  write_model(tmp / "m", tensors, 100'000);
  const size_t many = shard_files(tmp / "m").size();
  write_model(tmp / "m", tensors, 300'000);  // fewer shards: the extra ones go
  EXPECT_LT(shard_files(tmp / "m").size(), many);
  EXPECT_EQ(CheckpointWeights::open(tmp / "m").files().size(), shard_files(tmp / "m").size() + 1);
  write_model(tmp / "m", tensors, kOneFile);
  EXPECT_TRUE(shard_files(tmp / "m").empty());
  EXPECT_FALSE(fs::exists(tmp / "m" / kWeightsIndexFile));
  EXPECT_FALSE(CheckpointWeights::open(tmp / "m").sharded());
}

// Pending tensors are made one shard at a time, each once, in order; one
// made at another size than planned is refused naming it.
TEST(CheckpointWeights, PendingTensorsAreMadeShardByShard) {
  TempDir tmp;
  std::vector<std::string> made;
  std::vector<PendingTensor> pending;
  for (int i = 0; i < 6; ++i) {
    const std::string name = fmt::format("w{}", i);
    pending.push_back({name, 40'000, [name, i, &made] {
                         made.push_back(name);
                         return at::full({100, 100}, static_cast<float>(i), at::kFloat);
                       }});
  }
  save_checkpoint_weights(tmp / "m", pending, 100'000);  // two tensors a shard
  EXPECT_EQ(made, (std::vector<std::string>{"w0", "w1", "w2", "w3", "w4", "w5"}));
  EXPECT_EQ(shard_files(tmp / "m").size(), 3u);
  const CheckpointWeights written = CheckpointWeights::open(tmp / "m");
  EXPECT_TRUE(at::equal(written.get("w4"), at::full({100, 100}, 4.0f)));
  pending[2].bytes = 20'000;
  testing::expect_throw_naming<std::logic_error>(
      [&] { save_checkpoint_weights(tmp / "n", pending, 100'000); },
      "tensor 'w2' was planned as 20000 bytes but made as 40000");
}

// A sharded copy of the fixture to damage.
class DamagedShards : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(fixture())) GTEST_SKIP() << fixture() << " not found";
    dir_ = write_model(tmp_ / "m", fixture_tensors(), 120'000);
    index_ = read_json(dir_ / kWeightsIndexFile);
  }
  void write_index(const nlohmann::json& index) {
    testing::write_file(dir_ / kWeightsIndexFile, index.dump());
  }
  std::string shard_of(const std::string& tensor) const {
    return index_["weight_map"][tensor].get<std::string>();
  }
  void expect_refused(const std::vector<std::string>& parts) {
    expect_error([&] { CheckpointWeights::open(dir_); }, parts);
    expect_error([&] { load_llama(dir_); }, parts);
  }

  TempDir tmp_;
  fs::path dir_;
  nlohmann::json index_;
};

TEST_F(DamagedShards, AMissingShardIsNamed) {
  const std::string shard = shard_of("model.norm.weight");
  fs::remove(dir_ / shard);
  expect_refused({shard, "missing", dir_.string(), kWeightsIndexFile, "incomplete download"});
}

TEST_F(DamagedShards, ATensorListedButAbsentFromItsShardIsNamed) {
  const std::string shard = shard_of("model.norm.weight");
  index_["weight_map"]["model.layers.9.mlp.up_proj.weight"] = shard;
  write_index(index_);
  expect_refused({"'model.layers.9.mlp.up_proj.weight'", shard, "does not hold it"});
}

TEST_F(DamagedShards, ATensorUnderTheWrongShardIsNamedWithWhereItIs) {
  const std::string right = shard_of("model.norm.weight");
  const std::string wrong = shard_of("model.embed_tokens.weight");
  ASSERT_NE(right, wrong);
  index_["weight_map"]["model.norm.weight"] = wrong;
  write_index(index_);
  expect_refused({"'model.norm.weight'", wrong, "does not hold it", right});
}

TEST_F(DamagedShards, ATensorInTwoShardsIsNamed) {
  // One shard rewritten to also hold a tensor another shard has.
  const std::string norm_shard = shard_of("model.norm.weight");
  const std::string embed_shard = shard_of("model.embed_tokens.weight");
  ASSERT_NE(norm_shard, embed_shard);
  const SafetensorsFile file = SafetensorsFile::open(dir_ / norm_shard);
  Tensors tensors;
  for (const std::string& name : file.names()) tensors.emplace_back(name, file.get(name).clone());
  tensors.emplace_back("model.embed_tokens.weight", at::zeros({512, 64}));
  save_safetensors(dir_ / norm_shard, tensors);
  expect_refused({"'model.embed_tokens.weight'", "two shards", norm_shard, embed_shard});
}

TEST_F(DamagedShards, ATensorTheIndexDoesNotListIsNamed) {
  index_["weight_map"].erase("model.norm.weight");
  write_index(index_);
  expect_refused({"'model.norm.weight'", "not listed", kWeightsIndexFile});
}

TEST_F(DamagedShards, AnIndexThatIsNotJsonIsNamed) {
  testing::write_file(dir_ / kWeightsIndexFile, index_.dump().substr(0, 100));
  expect_refused({(dir_ / kWeightsIndexFile).string(), "not valid JSON"});
  write_index({{"metadata", {{"total_size", 1}}}});
  expect_refused({(dir_ / kWeightsIndexFile).string(), "\"weight_map\""});
  index_["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors";
  write_index(index_);
  expect_refused({"'model.norm.weight'", "../elsewhere.safetensors", "not the name of a file"});
}

TEST(CheckpointWeights, AWeightOfAnUnsupportedDtypeIsNamed) {
  SKIP_WITHOUT_FIXTURE();
  TempDir tmp;
  for (const at::ScalarType dtype : {at::kLong, at::kDouble}) {
    Tensors tensors = fixture_tensors();
    for (auto& [name, t] : tensors) {
      if (name == "model.norm.weight") t = t.to(dtype);
    }
    write_model(tmp / "m", tensors, 120'000);
    const std::string stored = dtype == at::kLong ? "I64" : "F64";
    expect_error([&] { load_llama(tmp / "m"); },
                 {"'model.norm.weight'", "model-0000", stored, "F32, F16 or BF16"});
  }
}

TEST(CheckpointWeights, ADirectoryWithoutWeightsIsNamed) {
  TempDir tmp;
  testing::write_file(tmp / "pytorch_model.bin", "pickle");
  expect_error([&] { CheckpointWeights::open(tmp.path()); },
               {tmp.path().string(), kSingleWeightsFile, kWeightsIndexFile, "pytorch_model.bin"});
}

TEST(CheckpointWeights, ModelSafetensorsWinsOverAnIndexAsInTransformers) {
  SKIP_WITHOUT_FIXTURE();
  TempDir tmp;
  const fs::path dir = write_model(tmp / "m", fixture_tensors(), kOneFile);
  testing::write_file(dir / kWeightsIndexFile, "not even JSON");
  EXPECT_FALSE(CheckpointWeights::open(dir).sharded());
  EXPECT_EQ(CheckpointWeights::open(dir).source(), dir / kSingleWeightsFile);
}

}  // namespace
}  // namespace vitrine::models
