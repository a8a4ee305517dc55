// Router texts generated from titles (router_examples.h) and the router
// classifier trained on them with catalogue evidence (classifier_training.h).
#include "training/router_examples.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "models/text_classifier.h"
#include "tests/support/expect_error.h"
#include "tests/support/temp_dir.h"
#include "training/classifier_training.h"

namespace vitrine::training {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kTitles = {
    "The Mauritius Command",
    "City of Djinns: A Year in Delhi",
    "Why Am I Afraid to Tell You Who I Am?",
    "Girls Ballet Tutu Neon Pink",
    "Light on Yoga",
    "How to Mind Map: The Thinking Tool That Will Change Your Life",
    "Kasparov's Opening Repertoire (The Macmillan Chess Library)",
    "Ratburger"};

TEST(RouterExamples, AreDeterministicPerTitleAndSeed) {
  RouterExampleOptions options;
  const auto a = generate_router_examples(kTitles, options);
  const auto b = generate_router_examples(kTitles, options);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].text, b[i].text);
  // A title's texts depend on it and the seed only, not on the others.
  const std::vector<std::string> one = {kTitles[1]};
  const auto alone = generate_router_examples(one, options);
  const size_t per_title =
      static_cast<size_t>(options.questions_per_title + options.titles_per_title);
  ASSERT_EQ(alone.size(), per_title);
  for (size_t i = 0; i < per_title; ++i) EXPECT_EQ(alone[i].text, a[per_title + i].text);
  options.seed = 2;
  const auto other = generate_router_examples(kTitles, options);
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i].text == other[i].text;
  EXPECT_LT(same, a.size() / 2);
}

TEST(RouterExamples, AskEachTitleInEveryShapeAndTypeItAsATitle) {
  RouterExampleOptions options;
  options.questions_per_title = 40;
  const auto examples = generate_router_examples(kTitles, options);
  std::map<std::string, int> kinds;
  int qa = 0, describe = 0, without_evidence = 0;
  for (const auto& e : examples) {
    ++kinds[e.kind];
    (e.label == "qa" ? qa : describe) += 1;
    without_evidence += !e.evidence;
    EXPECT_FALSE(e.text.empty());
    EXPECT_TRUE(e.label == "qa" || e.kind == "noisy_title") << e.kind;
  }
  EXPECT_EQ(qa, 40 * static_cast<int>(kTitles.size()));
  EXPECT_EQ(describe, options.titles_per_title * static_cast<int>(kTitles.size()));
  for (const char* kind : {"question", "question_pt", "request", "request_pt", "fronted",
                           "fronted_pt", "format", "topic", "topic_pt", "noisy_title"}) {
    EXPECT_GT(kinds[kind], 0) << kind;
  }
  // Roughly the configured shares (0.4 Portuguese, 0.25 without evidence).
  const int portuguese = kinds["question_pt"] + kinds["request_pt"] + kinds["fronted_pt"] +
                         kinds["format_pt"] + kinds["topic_pt"];
  EXPECT_NEAR(static_cast<double>(portuguese) / qa, 0.4, 0.08);
  EXPECT_NEAR(static_cast<double>(without_evidence) / static_cast<double>(examples.size()), 0.25,
              0.08);
}

TEST(RouterExamples, TitlesThatReadAsQuestionsAreAlwaysLookedUp) {
  RouterExampleOptions options;
  options.titles_per_title = 30;
  options.without_evidence_share = 1;  // everything else goes without evidence
  const std::vector<std::string> titles = {"Why Am I Afraid to Tell You Who I Am?",
                                           "How to Mind Map: The Thinking Tool"};
  for (const auto& e : generate_router_examples(titles, options)) {
    if (e.label == "describe") EXPECT_TRUE(e.evidence) << e.text;
    if (e.label == "qa") EXPECT_FALSE(e.evidence) << e.text;
  }
  EXPECT_TRUE(title_reads_as_question("Why Am I Afraid to Tell You Who I Am?"));
  EXPECT_TRUE(title_reads_as_question("How to Mind Map: The Thinking Tool"));
  EXPECT_TRUE(title_reads_as_question("Infallible? "));
  EXPECT_FALSE(title_reads_as_question("The Mauritius Command"));
  EXPECT_TRUE(title_reads_as_question("Whose Line Is It Anyway"));
  EXPECT_FALSE(title_reads_as_question("Wholesome Cooking"));  // a word, not a prefix
  EXPECT_FALSE(title_reads_as_question(""));
}

TEST(RouterExamples, MaxTitlesTakesAHashedPickInTheGivenOrder) {
  RouterExampleOptions options;
  options.max_titles = 3;
  options.questions_per_title = 1;
  options.titles_per_title = 0;
  const auto picked = generate_router_examples(kTitles, options);
  EXPECT_EQ(picked.size(), 3u);
  std::vector<std::string> reversed(kTitles.rbegin(), kTitles.rend());
  const auto again = generate_router_examples(reversed, options);
  std::multiset<std::string> a, b;
  for (const auto& e : picked) a.insert(e.text);
  for (const auto& e : again) b.insert(e.text);
  EXPECT_EQ(a, b);  // the same titles, whatever their order
}

TEST(RouterExamples, RefusesOptionsThatCannotWork) {
  RouterExampleOptions options;
  options.portuguese_share = 1.5;
  testing::expect_error([&] { generate_router_examples(kTitles, options); },
                        {"portuguese_share", "1.5"});
  options = {};
  options.questions_per_title = -1;
  testing::expect_error([&] { validate(options); }, {"questions_per_title"});
}

// A router task written by hand: the titles and a templated question each.
void write_router_task(const fs::path& dataset) {
  fs::create_directories(dataset / "tasks" / "router");
  const auto write = [&](const char* split, std::span<const std::string> titles) {
    std::string lines;
    for (const std::string& t : titles) {
      lines +=
          nlohmann::json({{"text", t}, {"label", "describe"}, {"kind", "title"}}).dump() + "\n";
      lines +=
          nlohmann::json({{"text", "What is " + t + "?"}, {"label", "qa"}, {"kind", "question"}})
              .dump() +
          "\n";
    }
    testing::write_file(dataset / "tasks" / "router" / (std::string(split) + ".jsonl"), lines);
  };
  write("train", std::span(kTitles).first(6));
  write("validation", std::span(kTitles).subspan(6, 1));
  write("test", std::span(kTitles).subspan(7));
}

TEST(ClassifierTraining, LearnsFromGeneratedTextsWithTheFindersEvidence) {
  testing::TempDir dir;
  write_router_task(dir.path() / "dataset");
  // The catalogue stand-in: a title of kTitles typed exactly in the text.
  int lookups = 0;
  const TitleEvidenceFinder finder = [&](std::string_view text) {
    ++lookups;
    for (const std::string& t : kTitles) {
      const size_t at = text.find(t);
      if (at != std::string_view::npos) {
        return models::TitleEvidence{
            .found = true, .begin = at, .end = at + t.size(), .coverage = 1};
      }
    }
    return models::TitleEvidence{};
  };
  ClassifierTrainConfig config;
  config.buckets = 1 << 14;
  config.epochs = 4;
  const ClassifierReport report =
      train_classifier(dir.path() / "dataset", dir.path() / "classifier", config, 1, finder);
  EXPECT_TRUE(report.title_evidence);
  EXPECT_EQ(report.generated_examples,
            6 * (config.generated.questions_per_title + config.generated.titles_per_title));
  EXPECT_EQ(report.train_examples, 12 + report.generated_examples);
  EXPECT_GT(report.generated_test_examples, 0);
  EXPECT_GE(report.test_accuracy, 0.5);           // 2 texts: a smoke check, not a measure
  EXPECT_GT(lookups, report.train_examples / 2);  // most texts were looked up
  const auto info =
      nlohmann::json::parse(testing::read_file(dir.path() / "classifier" / "classifier.json"));
  EXPECT_EQ(info["format"], "vitrine-text-classifier-2");
  EXPECT_EQ(info["title_evidence"], true);
  EXPECT_EQ(info["training"]["generated_examples"], report.generated_examples);
  EXPECT_EQ(info["training"]["seed"], 1);
  // Without a finder the classifier learns from the text alone, and says so.
  const ClassifierReport alone =
      train_classifier(dir.path() / "dataset", dir.path() / "alone", config, 1);
  EXPECT_FALSE(alone.title_evidence);
  EXPECT_FALSE(models::load_text_classifier(dir.path() / "alone")->config().title_evidence);
}

}  // namespace
}  // namespace vitrine::training
