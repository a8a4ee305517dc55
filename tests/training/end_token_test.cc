// Which token training completions end with: measured on the base (auto),
// or configured.
#include "training/end_token.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/support/expect_error.h"
#include "tests/support/temp_dir.h"

namespace vitrine::training {
namespace {

namespace fs = std::filesystem;

class EndTokenChoice : public ::testing::Test {
 protected:
  void SetUp() override {
    model_dir_ = testing::shared_path("models/stories260K-hf");
    if (!fs::exists(model_dir_)) GTEST_SKIP() << model_dir_ << " not found";
    tokenizer_ = models::load_tokenizer(model_dir_);
    model_ = models::load_llama(model_dir_);
    // Whole product descriptions, as the describe task's completions.
    std::string lines;
    for (const char* text :
         {"A soft red ball for the park.", "The little kite flies high on windy days.",
          "A book of bedtime stories for children. Each story is short and sweet.",
          "Tom and his dog play with the big blue ball."}) {
      lines += fmt::format(R"({{"uid":"u","prompt":"Toy","completion":"{}"}})", text) + "\n";
    }
    testing::write_file(dir_.path() / "describe.jsonl", lines);
  }

  ExampleSet examples(int64_t max_seq_len = 512) const {
    return load_examples(dir_.path() / "describe.jsonl", prompts::Task::kDescribe, *tokenizer_,
                         models::ChatFamily::kPlain, max_seq_len);
  }

  fs::path model_dir_;
  testing::TempDir dir_;
  std::unique_ptr<models::Tokenizer> tokenizer_;
  models::LlamaForCausalLM model_{nullptr};
};

// stories260K was trained by llama2.c with a BOS before every story: at a
// text's end it predicts BOS, and EOS (a row of its head never trained) is
// far below. Auto measures that and takes BOS; the figures are recorded.
TEST_F(EndTokenChoice, AutoTakesTheTokenTheBaseLearntAtATextsEnd) {
  const prompts::EndToken end =
      choose_end_token(model_, *tokenizer_, examples().examples, EndTokenSetting::kAuto);
  EXPECT_EQ(end.id, tokenizer_->bos_id());
  EXPECT_EQ(end.piece, "<s>");
  EXPECT_EQ(end.chosen_by, "auto");
  EXPECT_EQ(end.texts, 4);
  ASSERT_EQ(end.mean_logprob.size(), 2u);
  EXPECT_GT(end.mean_logprob.at("<s>"), end.mean_logprob.at("</s>") + kEndTokenMargin);
  EXPECT_LT(end.mean_logprob.at("<s>"), 0);
  EXPECT_NE(describe(end).find("'<s>' (id 1; auto: mean log-probability at the end of 4"),
            std::string::npos)
      << describe(end);
}

TEST_F(EndTokenChoice, ConfiguredTokensAreTakenAsTheyAre) {
  const std::vector<Example> none;
  const prompts::EndToken eos = choose_end_token(model_, *tokenizer_, none, EndTokenSetting::kEos);
  EXPECT_EQ(eos.id, tokenizer_->eos_ids().front());
  EXPECT_EQ(eos.piece, "</s>");
  EXPECT_EQ(eos.chosen_by, "eos");
  EXPECT_TRUE(eos.mean_logprob.empty());
  const prompts::EndToken bos = choose_end_token(model_, *tokenizer_, none, EndTokenSetting::kBos);
  EXPECT_EQ(bos.id, tokenizer_->bos_id());
  EXPECT_EQ(bos.chosen_by, "bos");
}

// Nothing to measure on (every completion cut inside its first sentence):
// auto keeps the EOS and says why.
TEST_F(EndTokenChoice, AutoWithNothingCompleteKeepsTheEos) {
  // Room for two completion tokens after the prompt (the same for all).
  const ExampleSet cut = examples(examples().examples.front().prompt_len + 2);
  ASSERT_FALSE(cut.examples.empty());
  for (const Example& ex : cut.examples) ASSERT_FALSE(ex.ended);
  const prompts::EndToken end =
      choose_end_token(model_, *tokenizer_, cut.examples, EndTokenSetting::kAuto);
  EXPECT_EQ(end.id, tokenizer_->eos_ids().front());
  EXPECT_EQ(end.texts, 0);
  EXPECT_NE(describe(end).find("no complete training completion"), std::string::npos);
}

TEST(EndTokenSettings, ParseAndNameTheBadValue) {
  EXPECT_EQ(parse_end_token_setting("auto"), EndTokenSetting::kAuto);
  EXPECT_EQ(parse_end_token_setting("eos"), EndTokenSetting::kEos);
  EXPECT_EQ(parse_end_token_setting("bos"), EndTokenSetting::kBos);
  testing::expect_throw_naming<std::invalid_argument>([] { parse_end_token_setting("EOS"); },
                                                      "'EOS' is not one of auto, eos, bos");
}

}  // namespace
}  // namespace vitrine::training
