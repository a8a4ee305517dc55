// The three agents on the real sample: `vitrine prepare`'s dataset of
// ../shared/data/amazon_titles_sample.jsonl and the router classifier
// trained on it as `vitrine train` trains it (sample_run.h). Skips when the
// sample is absent.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "agents/classifier_agent.h"
#include "agents/describe_agent.h"
#include "agents/qa_agent.h"
#include "sample_run.h"
#include "training/examples.h"

namespace vitrine::agents {
namespace {

namespace fs = std::filesystem;

std::vector<nlohmann::json> read_lines(const fs::path& file) {
  std::vector<nlohmann::json> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

class SampleAgentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    run_ = testing::sample_run();
    if (!run_) GTEST_SKIP() << testing::no_sample_message();
    catalog_ = std::make_shared<const Catalog>(dataset() / "catalog.sqlite");
  }
  fs::path dataset() const { return run_->dataset; }
  models::TextClassifier classifier() const {
    return models::load_text_classifier(run_->classifier);
  }
  std::vector<nlohmann::json> all_lines(const std::string& task) const {
    std::vector<nlohmann::json> out;
    for (const char* split : {"train", "validation", "test"}) {
      for (auto& j : read_lines(dataset() / "tasks" / task / (std::string(split) + ".jsonl")))
        out.push_back(std::move(j));
    }
    return out;
  }

  const testing::SampleRun* run_ = nullptr;
  std::shared_ptr<const Catalog> catalog_;
};

TEST_F(SampleAgentsTest, EveryTitleIsDescribedByCatalogueEvidence) {
  const ClassifierAgent agent(classifier(), catalog_);
  int titles = 0, question_titles = 0;
  for (const auto& j : all_lines("router")) {
    if (j["label"] != "describe") continue;
    const Route route = agent.decide(j["text"].get<std::string>());
    EXPECT_EQ(route.task, Task::kDescribe) << j["text"];
    EXPECT_EQ(route.evidence, Evidence::kCatalogueTitle) << j["text"];
    ++titles;
    question_titles += j["kind"] == "question_title";
  }
  EXPECT_GT(titles, 100);
  std::cout << titles << " titles, " << question_titles << " of them question-like\n";
}

TEST_F(SampleAgentsTest, QuestionsGoToQaAndTheAgentBeatsTheClassifierAlone) {
  auto model = classifier();
  const ClassifierAgent agent(model, catalog_);
  int n = 0, agent_right = 0, classifier_right = 0;
  for (const auto& j : read_lines(dataset() / "tasks/router/test.jsonl")) {
    const std::string text = j["text"];
    const std::string label = j["label"];
    ++n;
    agent_right += task_name(agent.decide(text).task) == label;
    classifier_right += models::classify(*model, text).label == label;
  }
  ASSERT_GT(n, 20);
  std::cout << "router test: agent " << agent_right << "/" << n << ", classifier alone "
            << classifier_right << "/" << n << "\n";
  EXPECT_GE(agent_right, classifier_right);
  EXPECT_GE(agent_right, n * 85 / 100);
}

TEST_F(SampleAgentsTest, QaFindsTheProductOfGeneratedQuestions) {
  QaAgentOptions options;
  options.grounding = Grounding::kTitle;
  const QaAgent agent(catalog_, options);
  int n = 0, right = 0, unknown = 0;
  for (const auto& j : all_lines("qa")) {
    const AgentPrompt p = agent.prompt(j["question"].get<std::string>());
    ++n;
    if (!p.product_known) {
      ++unknown;
      continue;
    }
    const std::string uid = j["sources"][0];
    // Right: the product itself, or one with the very same title.
    right += p.sources[0].uid == uid || p.sources[0].title == catalog_->get(uid)->title;
    EXPECT_TRUE(p.grounded);
  }
  ASSERT_GT(n, 100);
  std::cout << "qa: " << right << "/" << n << " right, " << unknown << " unknown\n";
  EXPECT_GE(right, n * 90 / 100);
}

// Training and serving build one prompt: for each test question, the
// prompt the grounded qa adapter of configs/train.yaml was trained on
// (training's TaskPrompter, products from the describe task file) is the
// prompt the daemon's qa agent builds for that adapter (its recorded
// format, the product found in catalog.sqlite), whenever the agent finds
// the question's product.
TEST_F(SampleAgentsTest, AGroundedAdapterIsAskedAsItWasTrained) {
  const training::TrainConfig config = training::default_train_config();
  const prompts::PromptFormat format =
      training::prompt_format_of(config.adapters.at("qa_grounded"));
  ASSERT_EQ(format.qa.grounding, Grounding::kDescription);
  const training::TaskPrompter trained(
      format, std::make_shared<const training::ProductTexts>(
                  training::read_product_texts(training::product_texts_file(dataset(), "test"))));
  const QaAgent agent(catalog_);
  int n = 0, same = 0;
  for (const auto& j : read_lines(dataset() / "tasks/qa/test.jsonl")) {
    const std::string question = j["question"], uid = j["uid"];
    const AgentPrompt served = agent.prompt(question, {}, format.qa);
    ++n;
    if (!served.product_known || served.sources[0].uid != uid) continue;
    const models::ChatTurn turn = trained.turn(uid, question);
    EXPECT_EQ(served.turn.system, turn.system);
    EXPECT_EQ(served.turn.user, turn.user);
    EXPECT_NE(turn.user.find("\nDescription: "), std::string::npos) << turn.user;
    ++same;
  }
  ASSERT_GT(n, 20);
  EXPECT_GE(same, n * 3 / 4);
}

TEST_F(SampleAgentsTest, QuestionsAboutNoProductAreUnknown) {
  const QaAgent agent(catalog_);
  for (const char* question :
       {"Does the Zorblax 9000 toaster have a warranty?", "what is the weather like today?",
        "Can I pay with a credit card?", "Is the blue ceramic mug dishwasher safe?",
        "How long does shipping to Lisbon take?",
        // One common title word ("life", in "A Traveller's Life") among words no title has.
        "What is the battery life of the zq-9000 hyperdrive?"}) {
    const AgentPrompt p = agent.prompt(question);
    EXPECT_FALSE(p.product_known) << question << " -> " << p.sources[0].title << " "
                                  << p.sources[0].score;
  }
}

TEST_F(SampleAgentsTest, DescribeNamesTheTitlesRecord) {
  const DescribeAgent agent(catalog_);
  int n = 0, right = 0;
  for (const auto& j : read_lines(dataset() / "tasks/describe/test.jsonl")) {
    const std::string title = j["prompt"];
    const AgentPrompt p = agent.prompt(title);
    ++n;
    right += p.product_known && p.sources[0].title == title;
  }
  ASSERT_GT(n, 10);
  EXPECT_EQ(right, n);
}

// Loose: a decision is tens of microseconds; the bound only catches a
// pathology (a search per word, a model reload) on a loaded CI machine.
TEST_F(SampleAgentsTest, DecisionsAreFast) {
  const ClassifierAgent agent(classifier(), catalog_);
  const auto lines = read_lines(dataset() / "tasks/router/test.jsonl");
  for (const auto& j : lines) agent.decide(j["text"].get<std::string>());  // warm-up
  const auto start = std::chrono::steady_clock::now();
  for (const auto& j : lines) agent.decide(j["text"].get<std::string>());
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
      static_cast<double>(lines.size());
  std::cout << "decide: " << ms * 1000 << " us per text\n";
  EXPECT_LT(ms, 50.0);
}

}  // namespace
}  // namespace vitrine::agents
