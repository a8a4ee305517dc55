// QaAgent: the product a question is about, grounding none / title /
// description (the adapter's own or the daemon's override), unknown products.
#include "agents/qa_agent.h"

#include <gtest/gtest.h>

#include "hand_catalog.h"

namespace vitrine::agents {
namespace {

class QaAgentTest : public testing::HandCatalogTest {
 protected:
  QaAgent agent(Grounding grounding) const {
    QaAgentOptions options;
    options.grounding = grounding;
    return QaAgent(catalog_, options);
  }
};

constexpr const char* kQuestion = "How many watts is the stainless steel electric kettle?";

TEST_F(QaAgentTest, NoGroundingIsTheTrainingPromptWithSources) {
  const AgentPrompt p = agent(Grounding::kNone).prompt(kQuestion);
  testing::expect_training_prompt(p, Task::kQa, kQuestion);
  EXPECT_TRUE(p.product_known);
  ASSERT_EQ(p.sources.size(), 1u);
  EXPECT_EQ(p.sources[0].uid, "B00KETTLE1");
  EXPECT_GE(p.sources[0].score, QaAgentOptions{}.sources.min_score);
}

TEST_F(QaAgentTest, TitleGroundingNamesTheProduct) {
  const AgentPrompt p = agent(Grounding::kTitle).prompt(kQuestion);
  EXPECT_TRUE(p.grounded);
  EXPECT_EQ(p.turn.system, prompts::task_turn(Task::kQa, "").system);
  EXPECT_EQ(p.turn.user,
            std::string("Product: Stainless Steel Electric Kettle 1.7 Liter\n\n") + kQuestion);
  ASSERT_EQ(p.sources.size(), 1u);
  EXPECT_EQ(p.sources[0].uid, "B00KETTLE1");
}

TEST_F(QaAgentTest, DescriptionGroundingAddsTheDescription) {
  const AgentPrompt p = agent(Grounding::kDescription).prompt(kQuestion);
  EXPECT_TRUE(p.grounded);
  EXPECT_EQ(p.turn.user,
            std::string("Product: Stainless Steel Electric Kettle 1.7 Liter\n"
                        "Description: Boils water in three minutes. Automatic shut-off. 1500 "
                        "watts.\n\n") +
                kQuestion);
  // Same question, same prompt.
  EXPECT_EQ(agent(Grounding::kDescription).prompt(kQuestion).turn.user, p.turn.user);
  // A product without a description is grounded by its title alone.
  const AgentPrompt empty =
      agent(Grounding::kDescription).prompt("what is plain title with empty content?");
  ASSERT_TRUE(empty.product_known);
  EXPECT_EQ(empty.turn.user,
            "Product: Plain Title With Empty Content\n\nwhat is plain title with empty content?");
}

TEST_F(QaAgentTest, LongDescriptionsAreCutAtAWord) {
  QaAgentOptions options;
  options.grounding = Grounding::kDescription;
  options.max_description_chars = 30;
  const AgentPrompt p = QaAgent(catalog_, options).prompt(kQuestion);
  EXPECT_NE(p.turn.user.find("Description: Boils water in three minutes....\n"), std::string::npos)
      << p.turn.user;
}

// Without an override, each adapter is asked in the format it was trained
// with: the same question gives the closed-book prompt for a closed-book
// adapter and the grounded one, with its own cut, for a grounded adapter.
TEST_F(QaAgentTest, TheAdaptersOwnFormatDecidesTheGrounding) {
  const QaAgent qa(catalog_);
  testing::expect_training_prompt(qa.prompt(kQuestion), Task::kQa, kQuestion);
  const prompts::QaFormat grounded{.grounding = Grounding::kDescription,
                                   .max_description_chars = 30};
  const AgentPrompt p = qa.prompt(kQuestion, {}, grounded);
  EXPECT_TRUE(p.grounded);
  EXPECT_EQ(p.turn.user,
            prompts::qa_turn(kQuestion, grounded,
                             prompts::Product{.title = "Stainless Steel Electric Kettle 1.7 Liter",
                                              .description = "Boils water in three minutes. "
                                                             "Automatic shut-off. 1500 watts."})
                .user);
  EXPECT_NE(p.turn.user.find("Description: Boils water in three minutes....\n"), std::string::npos)
      << p.turn.user;
  // The daemon's overrides win over the adapter's format.
  QaAgentOptions options;
  options.grounding = Grounding::kNone;
  testing::expect_training_prompt(QaAgent(catalog_, options).prompt(kQuestion, {}, grounded),
                                  Task::kQa, kQuestion);
  options.grounding.reset();
  options.max_description_chars = 1000;
  EXPECT_NE(
      QaAgent(catalog_, options).prompt(kQuestion, {}, grounded).turn.user.find("1500 watts.\n"),
      std::string::npos);
}

TEST_F(QaAgentTest, UnknownProductIsSaidAndNeverGrounded) {
  for (const Grounding g : {Grounding::kNone, Grounding::kTitle, Grounding::kDescription}) {
    const AgentPrompt p = agent(g).prompt("Does the Zorblax 9000 toaster have a warranty?");
    EXPECT_FALSE(p.product_known) << grounding_name(g);
    EXPECT_TRUE(p.sources.empty()) << grounding_name(g);
    EXPECT_FALSE(p.grounded);
    EXPECT_EQ(p.turn.user, "Does the Zorblax 9000 toaster have a warranty?");
  }
  EXPECT_FALSE(agent(Grounding::kTitle).prompt("").product_known);
  EXPECT_FALSE(agent(Grounding::kTitle).prompt("what is it?").product_known);
}

using models::ChatMessage;
using models::ChatRole;

TEST_F(QaAgentTest, AFollowUpIsAboutTheLatestEarlierProduct) {
  const std::vector<ChatMessage> history = {
      {ChatRole::kUser, "Is Who Moved My Cheese? a good read?"},
      {ChatRole::kAssistant, "Yes, a short parable."},
      {ChatRole::kUser, "How many watts is the stainless steel electric kettle?"},
      {ChatRole::kAssistant, "1500 watts."},
  };
  const AgentPrompt p = agent(Grounding::kTitle).prompt("and does it switch itself off?", history);
  ASSERT_TRUE(p.product_known);
  ASSERT_EQ(p.sources.size(), 1u);
  EXPECT_EQ(p.sources[0].uid, "B00KETTLE1");  // the latest, not the first
  EXPECT_EQ(p.sources[0].evidence, SourceEvidence::kEarlierTurn);
  EXPECT_EQ(p.sources[0].history_index, 2);
  EXPECT_EQ(source_evidence_name(p.sources[0].evidence), "earlier turn");
  // The grounded prompt names the product the question is about.
  EXPECT_EQ(p.turn.user,
            "Product: Stainless Steel Electric Kettle 1.7 Liter\n\nand does it switch itself off?");
  // Portuguese follow-ups work the same.
  const AgentPrompt pt = agent(Grounding::kNone).prompt("e quem escreveu?", history);
  ASSERT_TRUE(pt.product_known);
  EXPECT_EQ(pt.sources[0].uid, "B00KETTLE1");
  testing::expect_training_prompt(pt, Task::kQa, "e quem escreveu?");
}

TEST_F(QaAgentTest, AnAssistantAnswerCanNameTheProduct) {
  const std::vector<ChatMessage> history = {
      {ChatRole::kUser, "Recommend a book about change"},
      {ChatRole::kAssistant, "Who Moved My Cheese?"},
  };
  const AgentPrompt p = agent(Grounding::kNone).prompt("who wrote it?", history);
  ASSERT_EQ(p.sources.size(), 1u);
  EXPECT_EQ(p.sources[0].uid, "0399144463");
  EXPECT_EQ(p.sources[0].history_index, 1);
}

TEST_F(QaAgentTest, AQuestionNamingAProductIgnoresTheHistory) {
  const std::vector<ChatMessage> history = {
      {ChatRole::kUser, "How many watts is the stainless steel electric kettle?"}};
  const AgentPrompt p = agent(Grounding::kNone).prompt("Is Who Moved My Cheese? long?", history);
  ASSERT_EQ(p.sources.size(), 1u);
  EXPECT_EQ(p.sources[0].uid, "0399144463");
  EXPECT_EQ(p.sources[0].evidence, SourceEvidence::kText);
  EXPECT_EQ(p.sources[0].history_index, -1);
  // A history that names no product leaves the question unknown.
  const AgentPrompt unknown =
      agent(Grounding::kNone)
          .prompt("who wrote it?", std::vector<ChatMessage>{{ChatRole::kUser, "hello"},
                                                            {ChatRole::kAssistant, "hi!"}});
  EXPECT_FALSE(unknown.product_known);
  EXPECT_TRUE(unknown.sources.empty());
}

TEST_F(QaAgentTest, MinScoreDecidesWhatIsKnown) {
  QaAgentOptions options;
  options.sources.min_score = 1.01;  // nothing scores above 1
  EXPECT_FALSE(QaAgent(catalog_, options).prompt(kQuestion).product_known);
  options.sources.min_score = 0;
  options.sources.max_sources = 3;
  const AgentPrompt p = QaAgent(catalog_, options).prompt("is harry potter scary?");
  ASSERT_GE(p.sources.size(), 2u);
  EXPECT_EQ(p.sources[0].title.substr(0, 12), "Harry Potter");
}

TEST_F(QaAgentTest, NoCatalogueIsRefused) {
  EXPECT_THROW(QaAgent(nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace vitrine::agents
