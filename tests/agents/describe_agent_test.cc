// DescribeAgent: the training prompt, and the records a title names.
#include "agents/describe_agent.h"

#include <gtest/gtest.h>

#include "hand_catalog.h"

namespace vitrine::agents {
namespace {

class DescribeAgentTest : public testing::HandCatalogTest {};

TEST_F(DescribeAgentTest, PromptIsTheTrainingPromptAndSourcesNameTheTitle) {
  const DescribeAgent agent(catalog_);
  const AgentPrompt p = agent.prompt("Stainless Steel Electric Kettle 1.7 Liter");
  testing::expect_training_prompt(p, Task::kDescribe, "Stainless Steel Electric Kettle 1.7 Liter");
  EXPECT_TRUE(p.product_known);
  ASSERT_EQ(p.sources.size(), 1u);
  EXPECT_EQ(p.sources[0].uid, "B00KETTLE1");
  EXPECT_EQ(p.sources[0].title, "Stainless Steel Electric Kettle 1.7 Liter");
  EXPECT_DOUBLE_EQ(p.sources[0].score, 1.0);
}

TEST_F(DescribeAgentTest, SharedTitleWordsNameEveryCloseEditionBestFirst) {
  const DescribeAgent agent(catalog_);
  const AgentPrompt p = agent.prompt("Harry Potter and the Prisoner of Azkaban");
  ASSERT_GE(p.sources.size(), 1u);
  EXPECT_EQ(p.sources[0].uid, "0439136350");
  for (size_t i = 1; i < p.sources.size(); ++i) {
    EXPECT_LE(p.sources[i].score, p.sources[i - 1].score);
    EXPECT_GE(p.sources[i].score, DescribeAgentOptions{}.sources.min_score);
  }
}

TEST_F(DescribeAgentTest, UnknownTitleIsDescribedWithSourcesSayingSo) {
  const DescribeAgent agent(catalog_);
  const AgentPrompt p = agent.prompt("Blue Ceramic Coffee Mug 12 oz");
  EXPECT_EQ(p.turn.user, "Describe this product: Blue Ceramic Coffee Mug 12 oz");
  EXPECT_FALSE(p.product_known);
  EXPECT_TRUE(p.sources.empty());
  // A near title (one shared word) is not the product.
  const AgentPrompt near = agent.prompt("Electric Toothbrush");
  EXPECT_FALSE(near.product_known);
  EXPECT_TRUE(near.sources.empty());
}

TEST_F(DescribeAgentTest, SourceOptionsBoundTheRecords) {
  DescribeAgentOptions options;
  options.sources.max_sources = 1;
  options.sources.min_score = 0.0;
  const DescribeAgent agent(catalog_, options);
  const AgentPrompt p = agent.prompt("harry potter azkaban");
  ASSERT_EQ(p.sources.size(), 1u);
  options.sources.max_sources = 0;
  EXPECT_TRUE(DescribeAgent(catalog_, options).prompt("harry potter azkaban").sources.empty());
  EXPECT_NO_THROW(DescribeAgent(catalog_).prompt(""));
  EXPECT_THROW(DescribeAgent(nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace vitrine::agents
