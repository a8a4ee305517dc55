// Generation on the real stories260K model against its reference.
#include "models/generation.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "models/peft_adapter.h"
#include "tests/support/temp_dir.h"

namespace vitrine::models {
namespace {

namespace fs = std::filesystem;

class Stories : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::shared_path("models/stories260K-hf");
    if (!fs::exists(dir_))
      GTEST_SKIP() << dir_ << " not found (../shared/models is not beside this checkout)";
    model_ = load_llama(dir_);
    tokenizer_ = load_tokenizer(dir_);
    std::ifstream in(dir_ / "reference.json");
    reference_ = nlohmann::json::parse(in)["sequences"][0];
    const auto ids = tokenizer_->encode(reference_["prompt"].get<std::string>(), true);
    prompt_.assign(ids.begin(), ids.end());
  }
  fs::path dir_;
  LlamaForCausalLM model_{nullptr};
  std::unique_ptr<Tokenizer> tokenizer_;
  nlohmann::json reference_;
  std::vector<int64_t> prompt_;
};

TEST_F(Stories, GreedyGivesTheReferenceTextExactly) {
  EXPECT_EQ(prompt_, reference_["ids"].get<std::vector<int64_t>>());
  GenerationOptions options;
  options.max_new_tokens = 30;
  std::string streamed;
  const auto result =
      generate(model_, *tokenizer_, prompt_, options, -1, [&](int64_t, std::string_view piece) {
        streamed += piece;
        return true;
      });
  EXPECT_EQ(result.ids, reference_["greedy_ids"].get<std::vector<int64_t>>());
  EXPECT_EQ(result.finish_reason, "length");
  EXPECT_EQ(streamed, result.text);
  std::vector<int32_t> prompt32(prompt_.begin(), prompt_.end());
  EXPECT_EQ(tokenizer_->decode(prompt32) + result.text,
            reference_["greedy_text"].get<std::string>());
}

TEST_F(Stories, AFirstPieceKeepsTheSpaceItHasAfterThePrompt) {
  // The reference continues "Once upon a time" with "," then "▁there": asked
  // to continue after the comma, the text starts " there", as it reads in
  // the whole.
  const auto greedy_ids = reference_["greedy_ids"].get<std::vector<int64_t>>();
  std::vector<int64_t> prompt = prompt_;
  prompt.push_back(greedy_ids[0]);
  ASSERT_EQ(tokenizer_->id_to_piece(static_cast<int32_t>(greedy_ids[1])).rfind("\xE2\x96\x81", 0),
            0u);
  GenerationOptions options;
  options.max_new_tokens = 6;
  std::string streamed;
  const auto result =
      generate(model_, *tokenizer_, prompt, options, -1, [&](int64_t, std::string_view piece) {
        streamed += piece;
        return true;
      });
  EXPECT_EQ(result.ids, std::vector<int64_t>(greedy_ids.begin() + 1, greedy_ids.begin() + 7));
  EXPECT_TRUE(result.text.starts_with(" there")) << result.text;
  EXPECT_EQ(streamed, result.text);
  std::vector<int32_t> whole(prompt.begin(), prompt.end());
  whole.insert(whole.end(), result.ids.begin(), result.ids.end());
  std::vector<int32_t> prompt32(prompt.begin(), prompt.end());
  EXPECT_EQ(tokenizer_->decode(prompt32) + result.text, tokenizer_->decode(whole));
}

TEST_F(Stories, SamplingIsSeededAndTopKOneIsGreedy) {
  GenerationOptions options;
  options.max_new_tokens = 20;
  options.temperature = 1.0;
  options.seed = 42;
  const auto a = generate(model_, *tokenizer_, prompt_, options);
  const auto b = generate(model_, *tokenizer_, prompt_, options);
  EXPECT_EQ(a.ids, b.ids);
  options.seed = 43;
  const auto c = generate(model_, *tokenizer_, prompt_, options);
  EXPECT_NE(a.ids, c.ids);
  options.top_k = 1;
  const auto greedy_ids = reference_["greedy_ids"].get<std::vector<int64_t>>();
  EXPECT_EQ(generate(model_, *tokenizer_, prompt_, options).ids,
            std::vector<int64_t>(greedy_ids.begin(), greedy_ids.begin() + 20));
  options.top_k = 0;
  options.top_p = 1e-6;  // only the most likely token survives
  EXPECT_EQ(generate(model_, *tokenizer_, prompt_, options).ids,
            std::vector<int64_t>(greedy_ids.begin(), greedy_ids.begin() + 20));
}

TEST_F(Stories, StopsOnEosStopStringsCancellationAndLength) {
  const auto greedy_ids = reference_["greedy_ids"].get<std::vector<int64_t>>();
  GenerationOptions options;
  options.max_new_tokens = 30;
  options.eos_ids = {greedy_ids[3]};
  auto r = generate(model_, *tokenizer_, prompt_, options);
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.ids, std::vector<int64_t>(greedy_ids.begin(), greedy_ids.begin() + 3));

  options.eos_ids.clear();
  options.stop_strings = {" girl"};
  r = generate(model_, *tokenizer_, prompt_, options);
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.text, ", there was a little");

  options.stop_strings.clear();
  int calls = 0;
  r = generate(model_, *tokenizer_, prompt_, options, -1,
               [&](int64_t, std::string_view) { return ++calls < 5; });
  EXPECT_EQ(r.finish_reason, "cancelled");
  EXPECT_EQ(r.ids.size(), 5u);

  options.max_new_tokens = 7;
  r = generate(model_, *tokenizer_, prompt_, options);
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(r.ids.size(), 7u);
}

TEST(Generation, ABatchOfMixedLengthsAndAdaptersEqualsEachRowAlone) {
  const fs::path dir = testing::shared_path("fixtures/hf-llama/mha-untied");
  const fs::path stories = testing::shared_path("models/stories260K-hf");
  if (!fs::exists(dir) || !fs::exists(stories)) GTEST_SKIP() << "../shared fixtures not found";
  std::ifstream in(dir / "expected.json");
  const auto expected = nlohmann::json::parse(in);
  LlamaForCausalLM model = load_llama(dir);
  attach_adapter(model, load_peft_adapter(dir / "adapter"), 0);
  const auto tokenizer = load_tokenizer(stories);  // any tokenizer: only the ids are compared here
  // len1 and len120 on the adapter, len17 on the base: the transformers/PEFT greedy ids.
  std::vector<BatchRequest> requests;
  std::vector<std::vector<int64_t>> want;
  for (const auto& [index, slot] : std::vector<std::pair<int, int>>{{0, 0}, {1, -1}, {2, 0}}) {
    const auto& seq = expected["sequences"][index];
    requests.push_back({seq["ids"].get<std::vector<int64_t>>(), slot});
    want.push_back((slot < 0 ? seq : expected["adapter"]["sequences"][index])["greedy"]
                       .get<std::vector<int64_t>>());
  }
  GenerationOptions options;
  options.max_new_tokens = 16;
  auto results = generate_batch(model, *tokenizer, requests, options);
  ASSERT_EQ(results.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(results[i].ids, want[i]) << "row " << i;
  // Each row stops on its own: an eos that only row 1 produces (at step 4).
  options.eos_ids = {want[1][3]};
  results = generate_batch(model, *tokenizer, requests, options);
  EXPECT_EQ(results[1].finish_reason, "stop");
  EXPECT_EQ(results[1].ids, std::vector<int64_t>(want[1].begin(), want[1].begin() + 3));
  for (size_t i : {0u, 2u}) {
    const auto it = std::find(want[i].begin(), want[i].end(), want[1][3]);
    EXPECT_EQ(results[i].ids, std::vector<int64_t>(want[i].begin(), it)) << "row " << i;
  }
}

TEST(Generation, RepetitionPenaltyFollowsTransformers) {
  // transformers: positive logits divided by the penalty, negative multiplied.
  at::Generator gen = at::detail::createCPUGenerator(0);
  GenerationOptions options;
  options.repetition_penalty = 4.0;
  const at::Tensor logits = at::tensor({2.0f, 1.5f, -1.0f});
  EXPECT_EQ(pick_next(logits, options, {}, gen), 0);
  EXPECT_EQ(pick_next(logits, options, {0}, gen), 1);                      // 2 / 4 = 0.5 < 1.5
  EXPECT_EQ(pick_next(at::tensor({-1.0f, -1.5f}), options, {0}, gen), 1);  // -1 * 4 = -4 < -1.5
}

TEST(Generation, GreedyPickEqualsThePenalisedArgmaxOfTensorOps) {
  at::manual_seed(3);
  at::Generator gen = at::detail::createCPUGenerator(0);
  for (const double penalty : {1.0, 1.1, 1.3, 0.8}) {
    GenerationOptions options;
    options.repetition_penalty = penalty;
    for (int trial = 0; trial < 50; ++trial) {
      const at::Tensor logits = at::randn({97}) * 3;
      std::vector<int64_t> seen;
      for (int k = 0; k < trial % 12; ++k) seen.push_back((k * 31 + trial * 7) % 97);
      if (!seen.empty()) seen.push_back(seen.front());  // a repeated id is penalised once
      // The reference: the penalty by tensor ops, then argmax.
      at::Tensor expected = logits.clone();
      if (!seen.empty() && penalty != 1.0) {
        const at::Tensor idx = at::tensor(seen);
        const at::Tensor picked = expected.index_select(0, idx);
        expected.index_copy_(0, idx, at::where(picked > 0, picked / penalty, picked * penalty));
      }
      EXPECT_EQ(pick_next(logits, options, seen, gen), expected.argmax().item<int64_t>())
          << "penalty " << penalty << ", trial " << trial;
    }
  }
}

// Options with the sampling fields set (the others at their defaults).
GenerationOptions settings(double temperature, double top_p = 1.0, double penalty = 1.0) {
  GenerationOptions o;
  o.temperature = temperature;
  o.top_p = top_p;
  o.repetition_penalty = penalty;
  return o;
}

TEST(Generation, SettingsOutOfRangeAreRefusedByName) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  auto refused = [](const GenerationOptions& o, const std::string& field) {
    try {
      validate_generation_options(o);
      ADD_FAILURE() << field << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  for (const double t : {nan, inf, -1.0}) refused(settings(t), "temperature");
  for (const double p : {nan, 0.0, -0.5, 1.5, inf}) refused(settings(0.8, p), "top_p");
  for (const double r : {nan, inf, 0.0, -2.0}) refused(settings(0.8, 1.0, r), "repetition_penalty");
  GenerationOptions o;
  o.top_k = -1;
  refused(o, "top_k");
  o = GenerationOptions();
  o.max_new_tokens = -1;
  refused(o, "max_new_tokens");
  // A Sequence refuses them as well, before anything is generated.
  EXPECT_THROW(Sequence({1, 2}, settings(nan), nullptr), std::invalid_argument);
}

TEST(Generation, ExtremeButValidSettingsPickATokenWithoutFailing) {
  // Each of these once made the sampler's probabilities NaN (the process died).
  at::manual_seed(5);
  const at::Tensor logits = at::randn({257}) * 4;
  const int64_t argmax = logits.argmax().item<int64_t>();
  for (const double t : {1e-45, 1e-300, 5e-324, 1e-30, 1e-38}) {
    at::Generator gen = at::detail::createCPUGenerator(1);
    // Temperatures this small leave only the most likely token.
    EXPECT_EQ(pick_next(logits, settings(t), {}, gen), argmax) << "temperature " << t;
  }
  at::Generator gen = at::detail::createCPUGenerator(1);
  // A top_p below float's smallest value keeps the most likely token alone.
  EXPECT_EQ(pick_next(logits, settings(0.8, 1e-300), {}, gen), argmax);
  // A tiny penalty turns seen positive logits into +Inf: one of them is
  // picked, sampled or greedy (seen ids 3 and 9 made positive here).
  at::Tensor skewed = logits.clone();
  skewed[3] = 0.5f;
  skewed[9] = 0.25f;
  const std::vector<int64_t> seen = {3, 9};
  for (const double t : {0.8, 0.0}) {
    const int64_t id = pick_next(skewed, settings(t, 1.0, 1e-300), seen, gen);
    EXPECT_TRUE(id == 3 || id == 9) << "temperature " << t << " picked " << id;
  }
}

TEST(Generation, NotFiniteLogitsEndTheRequestWithAClearError) {
  at::Tensor logits = at::randn({64});
  logits[10] = std::numeric_limits<float>::quiet_NaN();
  for (const double t : {0.0, 0.7}) {
    at::Generator gen = at::detail::createCPUGenerator(0);
    try {
      pick_next(logits, settings(t), {}, gen);
      ADD_FAILURE() << "NaN logits were sampled at temperature " << t;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("not finite"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace vitrine::models
