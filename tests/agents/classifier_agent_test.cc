// ClassifierAgent on a hand-made catalogue with hand-set classifiers: exact
// catalogue titles and titles as users type them win, a confident
// classifier decides (told where the title sits when it was trained so), an
// unsure one gives the default route. (sample_agents_test.cc and
// routing_eval_test.cc run a trained classifier.)
#include "agents/classifier_agent.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "hand_catalog.h"
#include "tests/support/constant_classifier.h"

namespace vitrine::agents {
namespace {

using vitrine::testing::constant_classifier;

class ClassifierAgentTest : public testing::HandCatalogTest {};

TEST_F(ClassifierAgentTest, ExactCatalogueTitleIsDescribedEvenWithAQuestionMark) {
  const ClassifierAgent agent(constant_classifier(0, 4), catalog_);  // always "qa", 98%
  for (const char* text :
       {"Who Moved My Cheese?", "who moved my cheese", " WHO MOVED MY CHEESE ?"}) {
    const Route route = agent.decide(text);
    EXPECT_EQ(route.task, Task::kDescribe) << text;
    EXPECT_EQ(route.evidence, Evidence::kCatalogueTitle) << text;
    ASSERT_TRUE(route.title_match.has_value()) << text;
    EXPECT_EQ(route.title_match->uid, "0399144463");
    EXPECT_EQ(route.title_match->title, "Who Moved My Cheese?");
    EXPECT_DOUBLE_EQ(route.title_match->score, 1.0);
    // The classifier's view is reported all the same.
    EXPECT_EQ(route.labels, (std::vector<std::string>{"describe", "qa"}));
    ASSERT_EQ(route.scores.size(), 2u);
    EXPECT_GT(route.scores[1], 0.95);
    EXPECT_DOUBLE_EQ(route.confidence, route.scores[1]);
  }
  // A question that contains the title is not the title.
  const Route question = agent.decide("Who moved my cheese? Is it a good gift?");
  EXPECT_EQ(question.task, Task::kQa);
  EXPECT_EQ(question.evidence, Evidence::kClassifier);
  EXPECT_FALSE(question.title_match.has_value());
}

TEST_F(ClassifierAgentTest, ConfidentClassifierDecides) {
  const ClassifierAgent describe(constant_classifier(4, 0), catalog_);
  const Route a = describe.decide("Blue Ceramic Mug 12 oz");
  EXPECT_EQ(a.task, Task::kDescribe);
  EXPECT_EQ(a.evidence, Evidence::kClassifier);
  EXPECT_GT(a.confidence, 0.95);
  EXPECT_FALSE(a.title_match.has_value());
  const ClassifierAgent qa(constant_classifier(0, 4), catalog_);
  const Route b = qa.decide("Does the kettle switch itself off?");
  EXPECT_EQ(b.task, Task::kQa);
  EXPECT_EQ(b.evidence, Evidence::kClassifier);
}

TEST_F(ClassifierAgentTest, UnsureClassifierGivesTheConfiguredDefault) {
  // softmax(0.2, 0) = (0.55, 0.45): below the default threshold of 0.6.
  ClassifierAgentOptions options;
  const ClassifierAgent to_qa(constant_classifier(0.2, 0), catalog_, options);
  const Route a = to_qa.decide("kettle");
  EXPECT_EQ(a.task, Task::kQa);
  EXPECT_EQ(a.evidence, Evidence::kDefault);
  EXPECT_NEAR(a.confidence, 0.55, 0.01);
  options.default_task = Task::kDescribe;
  const ClassifierAgent to_describe(constant_classifier(0, 0.2), catalog_, options);
  EXPECT_EQ(to_describe.decide("kettle").task, Task::kDescribe);
  EXPECT_EQ(to_describe.decide("kettle").evidence, Evidence::kDefault);
  options.min_confidence = 0.5;
  const ClassifierAgent trusting(constant_classifier(0, 0.2), catalog_, options);
  EXPECT_EQ(trusting.decide("kettle").task, Task::kQa);
  EXPECT_EQ(trusting.decide("kettle").evidence, Evidence::kClassifier);
}

TEST_F(ClassifierAgentTest, ExactAndNearTitlesCanBeTurnedOff) {
  ClassifierAgentOptions options;
  options.exact_titles = false;
  const ClassifierAgent near_only(constant_classifier(0, 4), catalog_, options);
  EXPECT_EQ(near_only.decide("Who Moved My Cheese?").evidence, Evidence::kNearTitle);
  options.near_titles = false;
  const ClassifierAgent agent(constant_classifier(0, 4), catalog_, options);
  const Route route = agent.decide("Who Moved My Cheese?");
  EXPECT_EQ(route.task, Task::kQa);
  EXPECT_EQ(route.evidence, Evidence::kClassifier);
}

TEST_F(ClassifierAgentTest, ATitleAsUsersTypeItIsDescribed) {
  const ClassifierAgent agent(constant_classifier(0, 4), catalog_);  // always "qa", 98%
  for (const auto& [text, uid] : std::vector<std::pair<std::string, std::string>>{
           {"who moved my chese", "0399144463"},                  // a typo
           {"harry potter and the prisoner", "0439136350"},       // cut short
           {"Harry Potter Prisoner of Azkaban", "0439136350"},    // small words dropped
           {"stainless steel electric kettle", "B00KETTLE1"}}) {  // the size left out
    const Route route = agent.decide(text);
    EXPECT_EQ(route.task, Task::kDescribe) << text;
    EXPECT_EQ(route.evidence, Evidence::kNearTitle) << text;
    ASSERT_TRUE(route.title_match.has_value()) << text;
    EXPECT_EQ(route.title_match->uid, uid) << text;
  }
  // Words around the title, or too little of it: the classifier decides.
  for (const char* text : {"who moved my chese, is it a good gift", "does the kettle boil fast",
                           "tell me about harry potter and the prisoner of azkaban", "kettle"}) {
    const Route route = agent.decide(text);
    EXPECT_EQ(route.evidence, Evidence::kClassifier) << text;
    EXPECT_EQ(route.task, Task::kQa) << text;
  }
}

TEST_F(ClassifierAgentTest, EvidenceNeedsEnoughOfATitle) {
  const std::string question = "does harry potter and the prisoner of azkaban have pictures?";
  const models::TitleEvidence e = title_evidence(*catalog_, question);
  ASSERT_TRUE(e.found);
  EXPECT_EQ(question.substr(e.begin, e.end - e.begin), "harry potter and the prisoner of azkaban");
  EXPECT_DOUBLE_EQ(e.coverage, 1.0);
  // One word shared with a longer title is not the title.
  for (const char* text : {"what is the battery life of the zq-9000 hyperdrive?",
                           "is the blue kettle dishwasher safe?", "how does it work", ""}) {
    EXPECT_FALSE(title_evidence(*catalog_, text).found) << text;
  }
  const auto finder = title_evidence_finder(dir_ / "catalog.sqlite");
  EXPECT_EQ(finder(question).begin, e.begin);
  EXPECT_THROW(title_evidence_finder(dir_ / "no-such.sqlite"), std::runtime_error);
}

TEST_F(ClassifierAgentTest, AnEvidenceClassifierIsGivenWhereTheTitleSits) {
  models::TextClassifierConfig config;
  config.labels = {"describe", "qa"};
  config.buckets = 4096;
  config.dim = 8;
  config.feature_set = 2;
  for (const bool evidence : {true, false}) {
    config.title_evidence = evidence;
    at::manual_seed(3);
    models::TextClassifier model(config);
    const ClassifierAgent agent(model, catalog_);
    const std::string text = "is harry potter and the prisoner of azkaban scary?";
    const models::TitleEvidence expected =
        evidence ? title_evidence(*catalog_, text) : models::TitleEvidence{};
    EXPECT_EQ(agent.decide(text).scores, models::classify(*model, text, expected).scores);
  }
}

TEST_F(ClassifierAgentTest, RefusesAClassifierOfOtherLabels) {
  try {
    ClassifierAgent agent(constant_classifier(0, 0, {"spam", "ham"}), catalog_);
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'spam'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ClassifierAgent(constant_classifier(0, 0), nullptr), std::invalid_argument);
}

TEST_F(ClassifierAgentTest, HostileTextNeverThrows) {
  const ClassifierAgent agent(constant_classifier(0, 4), catalog_);
  for (const char* text : {"", "?", "\"", "NEAR(a b)", "*", "title:x", "\xff\xfe"}) {
    EXPECT_NO_THROW(agent.decide(text)) << text;
  }
  EXPECT_EQ(evidence_name(Evidence::kClassifier), "classifier");
  EXPECT_EQ(evidence_name(Evidence::kCatalogueTitle), "catalogue title");
  EXPECT_EQ(evidence_name(Evidence::kNearTitle), "near catalogue title");
  EXPECT_EQ(evidence_name(Evidence::kDefault), "default");
}

}  // namespace
}  // namespace vitrine::agents
