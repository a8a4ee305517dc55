// Prompt formats: task names, task-file fields, the training turn and the
// grounded qa turn.
#include "prompts/prompts.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace vitrine::prompts {
namespace {

TEST(Prompts, TaskNamesRoundTripAndUnknownNamesThrow) {
  for (const Task task : {Task::kDescribe, Task::kQa}) EXPECT_EQ(parse_task(task_name(task)), task);
  EXPECT_EQ(task_name(Task::kDescribe), "describe");
  EXPECT_EQ(task_name(Task::kQa), "qa");
  try {
    parse_task("summarise");
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("summarise"), std::string::npos);
  }
}

TEST(Prompts, TaskFieldsAreTheTaskFilesKeys) {
  EXPECT_STREQ(task_fields(Task::kDescribe).input, "prompt");
  EXPECT_STREQ(task_fields(Task::kDescribe).output, "completion");
  EXPECT_STREQ(task_fields(Task::kQa).input, "question");
  EXPECT_STREQ(task_fields(Task::kQa).output, "answer");
}

// The adapters were tuned on these exact strings: changing them needs new
// adapters, so the test spells them out.
TEST(Prompts, TaskTurnsAreTheTrainingPrompts) {
  const models::ChatTurn describe = task_turn(Task::kDescribe, "How Things Work");
  EXPECT_EQ(describe.system, "You write product descriptions for an online shop.");
  EXPECT_EQ(describe.user, "Describe this product: How Things Work");
  const models::ChatTurn qa = task_turn(Task::kQa, "Is it for children?");
  EXPECT_EQ(qa.system, "You answer shoppers' questions about products.");
  EXPECT_EQ(qa.user, "Is it for children?");
}

TEST(Prompts, GroundedQaTurnNamesTheProductBeforeTheQuestion) {
  const models::ChatTurn title = grounded_qa_turn("Is it for children?", "How Things Work");
  EXPECT_EQ(title.system, task_turn(Task::kQa, "").system);
  EXPECT_EQ(title.user, "Product: How Things Work\n\nIs it for children?");
  const models::ChatTurn both =
      grounded_qa_turn("Is it for children?", "How Things Work", "An introduction to physics.");
  EXPECT_EQ(both.user,
            "Product: How Things Work\nDescription: An introduction to physics.\n\n"
            "Is it for children?");
}

}  // namespace
}  // namespace vitrine::prompts
