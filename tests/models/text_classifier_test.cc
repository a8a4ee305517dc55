#include "models/text_classifier.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <nlohmann/json.hpp>

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

std::vector<int64_t> slots(std::string_view text, const TextClassifierConfig& c,
                           const TitleEvidence& evidence = {}) {
  return text_features(text, c, evidence).slots;
}

TEST(TextClassifier, FeaturesAreStableAndSeeTheQuestionMark) {
  const TextClassifierConfig c = small_config();
  const auto a = slots("What is Mog's Kittens?", c);
  EXPECT_EQ(a, slots("What is Mog's Kittens?", c));
  EXPECT_EQ(a, slots("WHAT IS MOG'S KITTENS?", c));  // case does not matter
  EXPECT_NE(a, slots("What is Mog's Kittens", c));   // the ending does
  for (const int64_t f : a) {
    EXPECT_GE(f, 0);
    EXPECT_LT(f, c.buckets);
  }
  EXPECT_FALSE(slots("", c).empty());
  EXPECT_TRUE(text_features("What is Mog's Kittens?", c).weights.empty());  // set 1: a mean
}

TextClassifierConfig set2_config() {
  TextClassifierConfig c = small_config();
  c.buckets = 1 << 16;
  c.feature_set = 2;
  c.title_evidence = true;
  return c;
}

TitleEvidence title_at(std::string_view text, std::string_view title, double coverage = 1) {
  const size_t begin = text.find(title);
  return {.found = true, .begin = begin, .end = begin + title.size(), .coverage = coverage};
}

TEST(TextClassifier, Set2MasksTheTitleSoTheQuestionLooksTheSameForEveryProduct) {
  const TextClassifierConfig c = set2_config();
  const std::string a = "who wrote the mauritius command?", b = "who wrote wolf hall?";
  EXPECT_EQ(slots(a, c, title_at(a, "the mauritius command")),
            slots(b, c, title_at(b, "wolf hall")));
  // Without evidence the words are the text's own, and a slot says so.
  EXPECT_NE(slots(a, c), slots(b, c));
  // A title typed alone is the title alone, whatever it says.
  const std::string q = "where have all the boys gone?", t = "Ratburger";
  EXPECT_EQ(slots(q, c, title_at(q, q)), slots(t, c, title_at(t, t)));
  // Where a cue word stands matters: first, after the title, last.
  const std::string first = "does wolf hall have maps", after = "wolf hall does have maps";
  EXPECT_NE(slots(first, c, title_at(first, "wolf hall")),
            slots(after, c, title_at(after, "wolf hall")));
  // A span outside the text is clamped, never read past the end.
  EXPECT_NO_THROW(slots("short", c, {.found = true, .begin = 3, .end = 400, .coverage = 1}));
  EXPECT_NO_THROW(slots("short", c, {.found = true, .begin = 400, .end = 2, .coverage = 1}));
}

// The structure slots (after the words and n-grams) of `text` with `title` as evidence.
std::vector<int64_t> structure(const std::string& text, std::string_view title) {
  const TextFeatures f = text_features(text, set2_config(), title_at(text, title));
  std::vector<int64_t> out(f.slots.begin() + static_cast<std::ptrdiff_t>(f.n_text), f.slots.end());
  std::sort(out.begin(), out.end());
  return out;
}

size_t slots_apart(const std::vector<int64_t>& x, const std::vector<int64_t>& y) {
  std::vector<int64_t> only;
  std::set_symmetric_difference(x.begin(), x.end(), y.begin(), y.end(), std::back_inserter(only));
  return only.size();
}

TEST(TextClassifier, Set2TellsListingWordsFromOtherWordsAroundATitle) {
  // Texts that differ in their second word only: its first-two-words slot
  // differs (one each: 2), and when one of them is a listing word and the
  // other not, the slot that says what surrounds the title too (4).
  const auto listing = structure("wolf hall new dvd", "wolf hall");
  EXPECT_EQ(slots_apart(listing, structure("wolf hall uk dvd", "wolf hall")), 2u);
  EXPECT_EQ(slots_apart(listing, structure("wolf hall big dvd", "wolf hall")), 4u);
  // An author credited after "by" is a listing's too.
  EXPECT_EQ(slots_apart(structure("wolf hall by jane doe", "wolf hall"),
                        structure("wolf hall to jane doe", "wolf hall")),
            4u);
}

TEST(TextClassifier, Set2WeighsStructureAsHalfTheBag) {
  const TextClassifierConfig c = set2_config();
  const TextFeatures f = text_features("does the book have a glossary of terms?", c);
  ASSERT_EQ(f.weights.size(), f.slots.size());
  ASSERT_GT(f.n_text, 0u);
  ASSERT_LT(f.n_text, f.slots.size());
  double text = 0, structure = 0;
  for (size_t i = 0; i < f.slots.size(); ++i) (i < f.n_text ? text : structure) += f.weights[i];
  EXPECT_NEAR(text, 1 - kStructureShare, 1e-5);
  EXPECT_NEAR(structure, kStructureShare, 1e-5);
}

TEST(TextClassifier, ClassifyGivesTheModulesSoftmax) {
  at::manual_seed(7);
  TextClassifier model(small_config());
  at::NoGradGuard no_grad;
  for (const char* text : {"The Prophet", "Who is The Prophet for?", "", "¿Qué es esto?"}) {
    const std::vector<int64_t> features = slots(text, model->config());
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

TEST(TextClassifier, Set2ClassifyGivesTheModulesWeightedBag) {
  at::manual_seed(11);
  TextClassifier model(set2_config());
  at::NoGradGuard no_grad;
  const std::string text = "is light on yoga any good?";
  const TitleEvidence evidence = title_at(text, "light on yoga");
  const TextFeatures f = text_features(text, model->config(), evidence);
  const at::Tensor expected = at::softmax(
      model->forward(at::tensor(f.slots), at::zeros({1}, at::kLong), at::tensor(f.weights))[0], 0);
  const Classification c = classify(*model, text, evidence);
  for (int64_t i = 0; i < expected.size(0); ++i) {
    EXPECT_NEAR(c.scores[static_cast<size_t>(i)], expected[i].item<double>(), 1e-6);
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

TEST(TextClassifier, Set2SavesAsFormat2WithItsFeatureSetAndEvidence) {
  at::manual_seed(6);
  TextClassifier model(set2_config());
  testing::TempDir dir;
  save_text_classifier(*model, dir / "clf");
  const auto j = nlohmann::json::parse(testing::read_file(dir / "clf" / "classifier.json"));
  EXPECT_EQ(j["format"], "vitrine-text-classifier-2");
  EXPECT_EQ(j["feature_set"], 2);
  EXPECT_EQ(j["title_evidence"], true);
  TextClassifier loaded = load_text_classifier(dir / "clf");
  EXPECT_EQ(loaded->config().feature_set, 2);
  EXPECT_TRUE(loaded->config().title_evidence);
  const std::string text = "wolf hall, is it long?";
  const TitleEvidence e = title_at(text, "wolf hall");
  EXPECT_EQ(classify(*model, text, e).scores, classify(*loaded, text, e).scores);
  // A feature set this build does not compute is refused, not misread.
  auto edited = j;
  edited["feature_set"] = 3;
  testing::write_file(dir / "clf" / "classifier.json", edited.dump());
  testing::expect_error([&] { load_text_classifier(dir / "clf"); },
                        {"classifier.json", "feature_set 3"});
}

}  // namespace
}  // namespace vitrine::models
