// Task files -> prompts and completions -> packed rows -> batches.
#include "training/examples.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tests/support/expect_error.h"
#include "tests/support/temp_dir.h"
#include "training/lm_loss.h"
#include "training/trainable_adapter.h"

namespace vitrine::training {
namespace {

namespace fs = std::filesystem;

class Examples : public ::testing::Test {
 protected:
  void SetUp() override {
    model_dir_ = testing::shared_path("models/stories260K-hf");
    if (!fs::exists(model_dir_)) GTEST_SKIP() << model_dir_ << " not found";
    tokenizer_ = models::load_tokenizer(model_dir_);
    testing::write_file(
        dir_.path() / "describe.jsonl",
        R"({"uid":"a1","prompt":"Red Kite","completion":"A kite that flies high."})"
        "\n"
        R"({"uid":"b2","prompt":"Blue Ball","completion":"A ball for the park, soft and light."})"
        "\n"
        R"({"uid":"c3","prompt":"Tiny Cup","completion":"Cup."})"
        "\n");
  }

  fs::path model_dir_;
  testing::TempDir dir_;
  std::unique_ptr<models::Tokenizer> tokenizer_;
};

TEST_F(Examples, CompletionTokensAreTheOnlyTargets) {
  const ExampleSet set = load_examples(dir_.path() / "describe.jsonl", prompts::Task::kDescribe,
                                       *tokenizer_, models::ChatFamily::kPlain, 512);
  ASSERT_EQ(set.examples.size(), 3u);
  const Example& ex = set.examples[0];
  EXPECT_EQ(ex.uid, "a1");
  EXPECT_EQ(ex.ids.front(), tokenizer_->bos_id());
  EXPECT_EQ(ex.ids.back(), tokenizer_->eos_ids().front());
  const std::vector<int32_t> prompt(ex.ids.begin(), ex.ids.begin() + ex.prompt_len);
  const std::vector<int32_t> completion(ex.ids.begin() + ex.prompt_len, ex.ids.end() - 1);
  EXPECT_NE(tokenizer_->decode(prompt).find("Describe this product: Red Kite"), std::string::npos);
  EXPECT_EQ(tokenizer_->decode(completion), "A kite that flies high.");
}

TEST_F(Examples, LongCompletionsAreCutAndCounted) {
  const ExampleSet full = load_examples(dir_.path() / "describe.jsonl", prompts::Task::kDescribe,
                                        *tokenizer_, models::ChatFamily::kPlain, 512);
  const int64_t cap = full.examples[1].prompt_len + 3;
  const ExampleSet cut = load_examples(dir_.path() / "describe.jsonl", prompts::Task::kDescribe,
                                       *tokenizer_, models::ChatFamily::kPlain, cap);
  EXPECT_GE(cut.truncated, 1);
  for (const Example& ex : cut.examples) EXPECT_LE(static_cast<int64_t>(ex.ids.size()), cap);
  const ExampleSet none = load_examples(dir_.path() / "describe.jsonl", prompts::Task::kDescribe,
                                        *tokenizer_, models::ChatFamily::kPlain, 4);
  EXPECT_EQ(none.dropped_long_prompt, 3);
  EXPECT_TRUE(none.examples.empty());
}

TEST_F(Examples, CutCompletionsEndAtASentenceAndKeepTheirEos) {
  const std::string text =
      "A red kite. It flies high on windy days! Does it come with string? Yes.";
  testing::write_file(dir_.path() / "long.jsonl",
                      R"({"uid":"k1","prompt":"Red Kite","completion":")" + text + "\"}\n");
  auto load = [&](int64_t cap) {
    return load_examples(dir_.path() / "long.jsonl", prompts::Task::kDescribe, *tokenizer_,
                         models::ChatFamily::kPlain, cap);
  };
  const ExampleSet full = load(512);
  ASSERT_EQ(full.examples.size(), 1u);
  const int64_t prompt_len = full.examples[0].prompt_len;
  const auto whole = static_cast<int64_t>(full.examples[0].ids.size());
  const int32_t eos = tokenizer_->eos_ids().front();
  int at_sentence = 0;
  for (int64_t cap = prompt_len + 1; cap < whole; ++cap) {
    const ExampleSet cut = load(cap);
    ASSERT_EQ(cut.examples.size(), 1u) << cap;
    const Example& ex = cut.examples[0];
    EXPECT_EQ(cut.truncated, 1) << cap;
    EXPECT_LE(static_cast<int64_t>(ex.ids.size()), cap);
    const std::string kept =
        tokenizer_->decode(std::vector<int32_t>(ex.ids.begin() + ex.prompt_len, ex.ids.end() - 1));
    if (cut.cut_mid_sentence == 0) {
      // Whole sentences, then the EOS: the adapter learns to end.
      ++at_sentence;
      EXPECT_EQ(ex.ids.back(), eos) << cap;
      EXPECT_TRUE(ex.ended) << cap;
      EXPECT_EQ(text.rfind(kept, 0), 0u) << kept;
      const char last = kept.back();
      EXPECT_TRUE(last == '.' || last == '!' || last == '?') << kept;
    } else {
      // Not even the first sentence fits: cut where the room ends, no EOS.
      EXPECT_NE(ex.ids.back(), eos) << cap;
      EXPECT_FALSE(ex.ended) << cap;
      EXPECT_EQ(static_cast<int64_t>(ex.ids.size()), cap);
    }
  }
  EXPECT_GT(at_sentence, 0);
  // Room for exactly the first two sentences and the EOS gives those.
  const std::string two = "A red kite. It flies high on windy days!";
  for (int64_t cap = prompt_len + 1; cap < whole; ++cap) {
    const ExampleSet cut = load(cap);
    const Example& ex = cut.examples[0];
    const std::string kept =
        tokenizer_->decode(std::vector<int32_t>(ex.ids.begin() + ex.prompt_len, ex.ids.end() - 1));
    if (kept == two) {
      EXPECT_EQ(ex.ids.back(), eos);
      return;
    }
  }
  ADD_FAILURE() << "no room gave exactly the first two sentences";
}

// A format that records its end token (the base's, prompts::EndToken) ends
// every whole completion, and every one cut at a sentence, with it instead
// of the EOS; the rest is the same tokens.
TEST_F(Examples, ARecordedEndTokenEndsTheCompletionsInsteadOfTheEos) {
  const int32_t bos = tokenizer_->bos_id();
  const prompts::PromptFormat format{
      .task = prompts::Task::kDescribe,
      .qa = {},
      .end = {.id = bos, .piece = "<s>", .chosen_by = "bos", .texts = 0, .mean_logprob = {}}};
  const fs::path file = dir_.path() / "describe.jsonl";
  const ExampleSet plain =
      load_examples(file, prompts::Task::kDescribe, *tokenizer_, models::ChatFamily::kPlain, 512);
  const ExampleSet ended = load_examples(file, TaskPrompter(format, nullptr), *tokenizer_,
                                         models::ChatFamily::kPlain, 512);
  ASSERT_EQ(ended.examples.size(), plain.examples.size());
  for (size_t i = 0; i < ended.examples.size(); ++i) {
    const Example& a = plain.examples[i];
    const Example& b = ended.examples[i];
    EXPECT_TRUE(b.ended);
    EXPECT_EQ(b.ids.back(), bos);
    EXPECT_EQ(a.ids.back(), tokenizer_->eos_ids().front());
    EXPECT_EQ(std::vector<int32_t>(a.ids.begin(), a.ids.end() - 1),
              std::vector<int32_t>(b.ids.begin(), b.ids.end() - 1));
  }
}

// A grounded qa adapter learns from the prompt the daemon's qa agent will
// build: the product's title and description (from the split's describe
// file, cut as configured) before the question; closed-book from the
// question alone. The answer is the same completion either way.
TEST_F(Examples, GroundedQaPromptsCarryTheProductAsServingWill) {
  testing::write_file(
      dir_.path() / "qa.jsonl",
      R"({"uid":"b2","question":"Is Blue Ball soft?","answer":"A ball for the park, soft."})"
      "\n");
  const auto products =
      std::make_shared<const ProductTexts>(read_product_texts(dir_.path() / "describe.jsonl"));
  ASSERT_EQ(products->size(), 3u);
  EXPECT_EQ(products->at("b2").title, "Blue Ball");
  const prompts::PromptFormat format{
      .task = prompts::Task::kQa,
      .qa = {.grounding = prompts::Grounding::kDescription, .max_description_chars = 20},
      .end = {}};
  const ExampleSet grounded =
      load_examples(dir_.path() / "qa.jsonl", TaskPrompter(format, products), *tokenizer_,
                    models::ChatFamily::kPlain, 512);
  const ExampleSet closed = load_examples(dir_.path() / "qa.jsonl", prompts::Task::kQa, *tokenizer_,
                                          models::ChatFamily::kPlain, 512);
  ASSERT_EQ(grounded.examples.size(), 1u);
  ASSERT_EQ(closed.examples.size(), 1u);
  auto prompt_of = [&](const Example& ex) {
    return tokenizer_->decode(std::vector<int32_t>(ex.ids.begin(), ex.ids.begin() + ex.prompt_len));
  };
  auto completion_of = [&](const Example& ex) {
    return tokenizer_->decode(std::vector<int32_t>(ex.ids.begin() + ex.prompt_len, ex.ids.end()));
  };
  // Exactly the serving prompt: qa_turn of the same product, rendered alike.
  const std::string served = models::render_chat_prompt(
      models::ChatFamily::kPlain,
      prompts::qa_turn("Is Blue Ball soft?", format.qa,
                       prompts::Product{.title = "Blue Ball",
                                        .description = "A ball for the park, soft and light."}));
  EXPECT_EQ(grounded.examples[0].ids, [&] {
    std::vector<int32_t> ids = tokenizer_->encode(served, /*add_bos=*/true);
    const Example& ex = grounded.examples[0];
    ids.insert(ids.end(), ex.ids.begin() + ex.prompt_len, ex.ids.end());
    return ids;
  }());
  EXPECT_NE(prompt_of(grounded.examples[0])
                .find("Product: Blue Ball\nDescription: A ball for the park,...\n\nIs Blue Ball "
                      "soft?"),
            std::string::npos)
      << prompt_of(grounded.examples[0]);
  EXPECT_EQ(prompt_of(closed.examples[0]).find("Product:"), std::string::npos);
  EXPECT_EQ(completion_of(grounded.examples[0]), completion_of(closed.examples[0]));
  EXPECT_EQ(grounded.examples[0].ids.back(), tokenizer_->eos_ids().front());

  // A product missing from the describe file names the line and the cause.
  testing::write_file(dir_.path() / "orphan.jsonl",
                      R"({"uid":"zz","question":"What is it?","answer":"Something."})"
                      "\n");
  testing::expect_error(
      [&] {
        load_examples(dir_.path() / "orphan.jsonl", TaskPrompter(format, products), *tokenizer_,
                      models::ChatFamily::kPlain, 512);
      },
      {"orphan.jsonl' line 1", "product 'zz'"});
}

TEST_F(Examples, BadLinesNameTheFileAndLine) {
  testing::write_file(dir_.path() / "bad.jsonl", R"({"prompt":"x","completion":"y"})"
                                                 "\n"
                                                 R"({"prompt":"x"})"
                                                 "\n");
  testing::expect_error(
      [&] {
        load_examples(dir_.path() / "bad.jsonl", prompts::Task::kDescribe, *tokenizer_,
                      models::ChatFamily::kPlain, 512);
      },
      {"bad.jsonl' line 2: expected string fields 'prompt' and 'completion'"});
}

TEST_F(Examples, PackingKeepsEveryTargetAndFitsTheRows) {
  const ExampleSet set = load_examples(dir_.path() / "describe.jsonl", prompts::Task::kDescribe,
                                       *tokenizer_, models::ChatFamily::kPlain, 512);
  int64_t targets = 0, tokens = 0;
  for (const Example& ex : set.examples) {
    targets += static_cast<int64_t>(ex.ids.size()) - ex.prompt_len;
    tokens += static_cast<int64_t>(ex.ids.size());
  }
  const auto packed = pack_examples(set.examples, 512, /*packing=*/true);
  const auto single = pack_examples(set.examples, 512, /*packing=*/false);
  EXPECT_EQ(packed.size(), 1u);
  EXPECT_EQ(single.size(), 3u);
  for (const auto* rows : {&packed, &single}) {
    int64_t counted = 0, seen = 0;
    for (const PackedRow& row : *rows) {
      EXPECT_LE(row.ids.size(), 512u);
      seen += static_cast<int64_t>(row.ids.size());
      for (const int64_t label : row.labels) counted += label != kIgnoreLabel;
    }
    EXPECT_EQ(counted, targets);
    EXPECT_EQ(seen, tokens);
  }
  const Batch b = make_batch(single, 0, 3);
  EXPECT_EQ(b.ids.size(0), 3);
  EXPECT_EQ((b.labels != kIgnoreLabel).sum().item<int64_t>(), targets);
}

TEST_F(Examples, APackedRowTrainsExactlyAsTheExamplesApart) {
  const ExampleSet set = load_examples(dir_.path() / "describe.jsonl", prompts::Task::kDescribe,
                                       *tokenizer_, models::ChatFamily::kPlain, 512);
  const auto packed = pack_examples(set.examples, 512, true);
  const auto single = pack_examples(set.examples, 512, false);
  std::vector<double> losses;
  std::vector<at::Tensor> adapters;
  for (const auto* rows : {&packed, &single}) {
    models::LlamaForCausalLM model = models::load_llama(model_dir_);
    models::PeftAdapterConfig config;
    config.r = 4;
    config.lora_alpha = 8;
    config.target_modules = {"q_proj", "v_proj", "down_proj"};
    LoraTrainer trainer(model, make_trainable(model, init_lora_adapter(model, config, 7), 0),
                        OptimizerConfig{.learning_rate = 1e-2, .max_grad_norm = 0});
    StepResult r;
    for (int s = 0; s < 3; ++s) r = trainer.step({make_batch(*rows, 0, rows->size())});
    losses.push_back(r.loss);
    adapters.push_back(trainer.adapter().tensors().back().detach().clone());
  }
  EXPECT_NEAR(losses[0], losses[1], 1e-5);
  EXPECT_LT((adapters[0] - adapters[1]).abs().max().item<double>(), 1e-5);
}

}  // namespace
}  // namespace vitrine::training
