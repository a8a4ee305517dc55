// The architectures the seeds' models use, against Hugging Face transformers:
// Qwen2 (q/k/v biases, tied head, rope_theta 1e6, with a PEFT adapter),
// Mistral (sliding window, F16), Llama-3 RoPE scaling (F32 in shards) and a
// BF16 Llama in 4 shards. The tiny random checkpoints and transformers'
// logits are committed in tests/data/transformers/arch (made by
// scripts/make_arch_fixtures.py), so these run everywhere; where the
// reference stack is (../shared/reference; cmake -DVITRINE_REFERENCE_SRC=DIR
// or the *_SRC variables), Architectures.TheCommittedSetIsWhatTransformersWrites
// runs the script again and checks the committed set byte for byte.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "models/checkpoint_weights.h"
#include "models/llama.h"
#include "models/peft_adapter.h"
#include "models/safetensors.h"
#include "tests/support/layout_param.h"
#include "tests/support/reference_script.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tensors.h"

namespace vitrine::models {
namespace {

namespace fs = std::filesystem;
using testing::max_abs_diff;

constexpr double kTolerance = 1e-4;

// The committed set.
const fs::path& arch_dir() {
  static const fs::path dir = fs::path(VITRINE_TEST_DATA_DIR) / "transformers" / "arch";
  return dir;
}

#define REQUIRE_ARCH_FIXTURES() \
  ASSERT_TRUE(fs::is_directory(arch_dir())) << arch_dir() << " is missing from the checkout"

fs::path fixture(const std::string& name) {
  return arch_dir() / name;
}

// expected.safetensors: ids.<seq> [n] and logits.<seq> [n, vocab] (adapter_logits.<seq>).
struct Expected {
  SafetensorsFile file;
  std::vector<std::string> sequences;  // "len1", "len23", "len70"
};

Expected read_expected(const std::string& name) {
  Expected e{SafetensorsFile::open(fixture(name) / "expected.safetensors"), {}};
  for (const std::string& key : e.file.names()) {
    if (key.rfind("ids.", 0) == 0) e.sequences.push_back(key.substr(4));
  }
  return e;
}

at::Tensor ids_of(const Expected& e, const std::string& seq) {
  return e.file.get("ids." + seq).unsqueeze(0);  // [1, n]
}

// Every position's logits of every sequence against `prefix`<seq>; returns the largest error.
double worst_error(LlamaForCausalLM& model, const Expected& e, const std::string& prefix,
                   const RowAdapters& rows = {}) {
  at::NoGradGuard no_grad;
  double worst = 0;
  for (const std::string& seq : e.sequences) {
    const at::Tensor logits = model->forward(ids_of(e, seq), nullptr, rows)[0];  // [n, vocab]
    worst = std::max(worst, max_abs_diff(logits, e.file.get(prefix + seq)));
  }
  return worst;
}

class Architecture : public ::testing::TestWithParam<std::tuple<std::string, WeightLayout>> {
 protected:
  const std::string& name() const { return std::get<0>(GetParam()); }
  LlamaForCausalLM load() const {
    return load_llama(fixture(name()), "cpu", std::get<1>(GetParam()));
  }
};

TEST_P(Architecture, LogitsAtEveryPositionMatchTransformers) {
  REQUIRE_ARCH_FIXTURES();
  LlamaForCausalLM model = load();
  const double worst = worst_error(model, read_expected(name()), "logits.");
  EXPECT_LT(worst, kTolerance);
  RecordProperty("max_abs_logit_error", fmt::format("{:.3g}", worst));
  std::printf("%s: max |logit - transformers| %.3g\n", name().c_str(), worst);
}

TEST_P(Architecture, DecodingWithTheCacheEqualsTransformers) {
  REQUIRE_ARCH_FIXTURES();
  LlamaForCausalLM model = load();
  const Expected e = read_expected(name());
  at::NoGradGuard no_grad;
  const at::Tensor ids = ids_of(e, "len70");  // past Mistral's window and llama3's 64
  KvCache cache;
  std::vector<at::Tensor> steps{model->forward(ids.narrow(1, 0, 5), &cache)};
  for (int64_t t = 5; t < ids.size(1); ++t)
    steps.push_back(model->forward(ids.narrow(1, t, 1), &cache));
  EXPECT_LT(max_abs_diff(at::cat(steps, 1)[0], e.file.get("logits.len70")), kTolerance);
}

INSTANTIATE_TEST_SUITE_P(
    Transformers, Architecture,
    ::testing::Combine(::testing::Values("qwen2", "mistral", "llama3-rope", "llama-bf16"),
                       ::testing::Values(WeightLayout::kCheckpoint, WeightLayout::kPacked)),
    [](const auto& info) { return testing::layout_param_name(info.param); });

// The relative paths of `tree`'s entries.
std::vector<std::string> paths_of(const std::map<std::string, std::string>& tree) {
  std::vector<std::string> out;
  for (const auto& entry : tree) out.push_back(entry.first);
  return out;
}

// The committed set is transformers' own output: made again here by the
// real transformers and peft, it is the same bytes, file for file.
TEST(Architectures, TheCommittedSetIsWhatTransformersWrites) {
  REQUIRE_ARCH_FIXTURES();
  const fs::path fresh = fs::path(VITRINE_BINARY_DIR) / "tests" / "arch-fixtures";
  fs::create_directories(fresh.parent_path());
  const testing::ReferenceRun run = testing::run_reference_script(
      "make_arch_fixtures.py", fmt::format("--out '{}' --force", fresh.string()),
      fresh.string() + ".log");
  if (!run.skip.empty()) GTEST_SKIP() << run.skip;
  ASSERT_TRUE(run.failure.empty()) << run.failure;
  const std::map<std::string, std::string> committed = testing::directory_tree(arch_dir());
  const std::map<std::string, std::string> made = testing::directory_tree(fresh);
  ASSERT_EQ(paths_of(committed), paths_of(made));
  for (const auto& [file, bytes] : committed) {
    EXPECT_EQ(bytes, made.at(file))
        << file << " differs from what scripts/make_arch_fixtures.py writes now: rewrite the set"
        << " (scripts/make_arch_fixtures.py --out tests/data/transformers/arch --force)";
  }
}

// What each fixture is meant to exercise, so a regenerated set cannot
// quietly stop covering it.
TEST(Architectures, EachFixtureHasTheFeatureItChecks) {
  REQUIRE_ARCH_FIXTURES();
  const LlamaConfig qwen = load_llama_config(fixture("qwen2"));
  EXPECT_TRUE(qwen.qkv_bias && qwen.tie_word_embeddings);
  EXPECT_EQ(qwen.rope_theta, 1e6);
  EXPECT_EQ(load_llama_config(fixture("mistral")).sliding_window, 8);
  EXPECT_EQ(load_llama_config(fixture("llama3-rope")).rope_scaling.type, RopeScalingType::kLlama3);
  const std::vector<std::pair<std::string, SafetensorsDtype>> stored = {
      {"qwen2", SafetensorsDtype::kF32},
      {"mistral", SafetensorsDtype::kF16},
      {"llama3-rope", SafetensorsDtype::kF32},
      {"llama-bf16", SafetensorsDtype::kBF16}};
  for (const auto& [name, dtype] : stored) {
    const CheckpointWeights weights = CheckpointWeights::open(fixture(name));
    EXPECT_EQ(weights.info("model.norm.weight").dtype, dtype) << name;
  }
  EXPECT_EQ(CheckpointWeights::open(fixture("llama3-rope")).files().size(), 3u);  // index + 2
  EXPECT_GE(CheckpointWeights::open(fixture("llama-bf16")).files().size(), 4u);   // index + 3+
}

TEST(Architectures, TransformersShardsLoadAsTheirMergedFile) {
  REQUIRE_ARCH_FIXTURES();
  testing::TempDir tmp;
  const CheckpointWeights shards = CheckpointWeights::open(fixture("llama-bf16"));
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const std::string& name : shards.names()) tensors.emplace_back(name, shards.stored(name));
  save_checkpoint_weights(tmp.path(), tensors, int64_t{1} << 40);
  fs::copy_file(fixture("llama-bf16") / "config.json", tmp / "config.json");
  ASSERT_TRUE(fs::exists(tmp / kSingleWeightsFile));
  const at::Tensor ids = ids_of(read_expected("llama-bf16"), "len70");
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(load_llama(tmp.path())->forward(ids),
                        load_llama(fixture("llama-bf16"))->forward(ids)));
}

// Mistral's window with left padding and with packed examples: each row or
// example still computes what it computes alone.
TEST(Architectures, TheSlidingWindowHoldsForPaddedRowsAndPackedExamples) {
  REQUIRE_ARCH_FIXTURES();
  LlamaForCausalLM model = load_llama(fixture("mistral"));
  const Expected e = read_expected("mistral");
  at::NoGradGuard no_grad;
  const at::Tensor a = ids_of(e, "len23"), b = ids_of(e, "len70").narrow(1, 0, 30);
  const at::Tensor padded = at::cat({at::zeros({1, 7}, at::kLong), a}, 1);  // [1, 30]
  const at::Tensor batch = at::cat({padded, b}, 0);                         // [2, 30]
  const at::Tensor out = model->forward(batch, nullptr, {}, nullptr, {7, 0});
  EXPECT_LT(max_abs_diff(out[0].narrow(0, 7, 23), e.file.get("logits.len23")), kTolerance);
  EXPECT_LT(max_abs_diff(out[1], e.file.get("logits.len70").narrow(0, 0, 30)), kTolerance);
  const at::Tensor packed = at::cat({a, b}, 1);  // [1, 53]
  const at::Tensor segments =
      at::cat({at::zeros({1, 23}, at::kLong), at::ones({1, 30}, at::kLong)}, 1);
  const at::Tensor both = model->forward_packed(packed, segments)[0];  // [53, vocab]
  EXPECT_LT(max_abs_diff(both.narrow(0, 0, 23), e.file.get("logits.len23")), kTolerance);
  EXPECT_LT(max_abs_diff(both.narrow(0, 23, 30), e.file.get("logits.len70").narrow(0, 0, 30)),
            kTolerance);
}

TEST(Architectures, APeftAdapterOnQwen2MatchesPeft) {
  REQUIRE_ARCH_FIXTURES();
  const PeftAdapter adapter = load_peft_adapter(fixture("qwen2") / "adapter");
  for (const WeightLayout layout : {WeightLayout::kCheckpoint, WeightLayout::kPacked}) {
    LlamaForCausalLM model = load_llama(fixture("qwen2"), "cpu", layout);
    attach_adapter(model, adapter, 0);
    const Expected e = read_expected("qwen2");
    const double worst = worst_error(model, e, "adapter_logits.", {0});
    EXPECT_LT(worst, kTolerance) << (layout == WeightLayout::kPacked ? "packed" : "checkpoint");
    std::printf("qwen2 + PEFT adapter%s: max |logit - peft| %.3g\n",
                layout == WeightLayout::kPacked ? " (packed)" : "", worst);
  }
}

// Training a LoRA adapter on Qwen2 moves A and B only: the q/k/v biases are
// frozen base parameters, like the weights.
TEST(Architectures, LoraTrainingOnQwen2LeavesTheBiasesFrozen) {
  REQUIRE_ARCH_FIXTURES();
  LlamaForCausalLM model = load_llama(fixture("qwen2"));
  LoraLinear q = model->projections().front().second;  // layer 0 q_proj
  ASSERT_TRUE(q->bias.defined());
  const int64_t r = 4;
  LoraWeights w{at::randn({r, q->in_features()}).mul_(0.1).requires_grad_(),
                at::randn({q->out_features(), r}).mul_(0.1).requires_grad_(), 2.0, 0.0};
  q->set_adapter(0, w);
  model->train();
  const at::Tensor ids = ids_of(read_expected("qwen2"), "len23");
  model->forward(ids, nullptr, {0}).pow(2).mean().backward();
  EXPECT_TRUE(w.a.grad().defined() && w.b.grad().defined());
  for (const auto& item : model->named_parameters(/*recurse=*/true)) {
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
    EXPECT_FALSE(item.value().grad().defined()) << item.key();
  }
}

}  // namespace
}  // namespace vitrine::models
