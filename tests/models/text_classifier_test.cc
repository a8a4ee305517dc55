#include "models/text_classifier.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tests/support/expect_error.h"
#include "tests/support/temp_dir.h"

namespace vitrine::models {
namespace {

TextClassifierConfig small_config() {
  TextClassifierConfig c;
  c.labels = {"describe", "qa"};
  c.buckets = 1024;
  c.dim = 8;
  return c;
}

TEST(TextClassifier, FeaturesAreStableAndSeeTheQuestionMark) {
  const TextClassifierConfig c = small_config();
  const auto a = text_features("What is Mog's Kittens?", c);
  EXPECT_EQ(a, text_features("What is Mog's Kittens?", c));
  EXPECT_EQ(a, text_features("WHAT IS MOG'S KITTENS?", c));  // case does not matter
  EXPECT_NE(a, text_features("What is Mog's Kittens", c));   // the ending does
  for (const int64_t f : a) {
    EXPECT_GE(f, 0);
    EXPECT_LT(f, c.buckets);
  }
  EXPECT_FALSE(text_features("", c).empty());
}

TEST(TextClassifier, ClassifyGivesTheModulesSoftmax) {
  at::manual_seed(7);
  TextClassifier model(small_config());
  at::NoGradGuard no_grad;
  for (const char* text : {"The Prophet", "Who is The Prophet for?", "", "¿Qué es esto?"}) {
    const std::vector<int64_t> features = text_features(text, model->config());
    const at::Tensor expected =
        at::softmax(model->forward(at::tensor(features), at::zeros({1}, at::kLong))[0], 0);
    const Classification c = classify(*model, text);
    ASSERT_EQ(c.scores.size(), static_cast<size_t>(expected.size(0)));
    int64_t best = 0;
    for (int64_t i = 0; i < expected.size(0); ++i) {
      EXPECT_NEAR(c.scores[static_cast<size_t>(i)], expected[i].item<double>(), 1e-6) << text;
      if (expected[i].item<double>() > expected[best].item<double>()) best = i;
    }
    EXPECT_EQ(c.label, model->config().labels[static_cast<size_t>(best)]) << text;
  }
}

TEST(TextClassifier, SaveLoadRoundTripGivesTheSameScores) {
  at::manual_seed(5);
  TextClassifier model(small_config());
  testing::TempDir dir;
  save_text_classifier(*model, dir / "clf", {{"note", "test"}});
  TextClassifier loaded = load_text_classifier(dir / "clf");
  for (const char* text : {"The Prophet", "Who is The Prophet for?", ""}) {
    EXPECT_EQ(classify(*model, text).scores, classify(*loaded, text).scores) << text;
  }
  testing::write_file(dir / "clf" / "classifier.json", "{\"format\": \"other\"}");
  testing::expect_error([&] { load_text_classifier(dir / "clf"); },
                        {"classifier.json", "not a vitrine text classifier"});
}

}  // namespace
}  // namespace vitrine::models
