// Prompt formats: task names, task-file fields, the training turn, the
// grounded qa turn, description cuts and the adapter's prompt_format.json.
#include "prompts/prompts.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "prompts/prompt_format.h"
#include "tests/support/expect_error.h"
#include "tests/support/temp_dir.h"

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

TEST(Prompts, GroundingNamesRoundTripAndTheOldNameSaysItsNewOne) {
  for (const Grounding g : {Grounding::kNone, Grounding::kTitle, Grounding::kDescription})
    EXPECT_EQ(parse_grounding(grounding_name(g)), g);
  EXPECT_EQ(grounding_name(Grounding::kDescription), "description");
  EXPECT_THROW(parse_grounding("full"), std::invalid_argument);
  try {
    parse_grounding("title_and_description");
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("now called 'description'"), std::string::npos);
  }
}

// qa_turn is what training and serving both call: the grounding decides
// what of the product goes before the question.
TEST(Prompts, QaTurnFollowsTheGrounding) {
  const Product product{.title = "How Things Work",
                        .description = "An introduction to physics for curious readers."};
  const std::string question = "Is it for children?";
  EXPECT_EQ(qa_turn(question, {}, product).user, task_turn(Task::kQa, question).user);
  EXPECT_EQ(qa_turn(question, {.grounding = Grounding::kTitle}, product).user,
            grounded_qa_turn(question, "How Things Work").user);
  EXPECT_EQ(qa_turn(question, {.grounding = Grounding::kDescription}, product).user,
            "Product: How Things Work\nDescription: An introduction to physics for curious "
            "readers.\n\nIs it for children?");
  // The description is cut as configured, at a word.
  EXPECT_EQ(qa_turn(question, {.grounding = Grounding::kDescription, .max_description_chars = 20},
                    product)
                .user,
            "Product: How Things Work\nDescription: An introduction to...\n\nIs it for children?");
  // No product known: the closed-book prompt whatever the grounding.
  EXPECT_EQ(qa_turn(question, {.grounding = Grounding::kDescription}, std::nullopt).user, question);
  EXPECT_EQ(qa_turn(question, {.grounding = Grounding::kDescription}, product).system,
            task_turn(Task::kQa, question).system);
}

TEST(Prompts, LongDescriptionsAreCutAtAWord) {
  EXPECT_EQ(cut_description("short", 30), "short");
  EXPECT_EQ(cut_description("abc def ghi", 9), "abc def...");
  EXPECT_EQ(cut_description("abcdefghij", 4), "abcd...");
  // Never inside a UTF-8 sequence: "ação" is a, ç (2 bytes), ã (2 bytes), o.
  EXPECT_EQ(cut_description("a\xC3\xA7\xC3\xA3o", 2), "a...");
}

TEST(PromptFormat, RoundTripsAndAMissingFileIsClosedBook) {
  const PromptFormat grounded{
      .task = Task::kQa,
      .qa = {.grounding = Grounding::kDescription, .max_description_chars = 600},
      .end = {}};
  const nlohmann::ordered_json json = prompt_format_to_json(grounded);
  EXPECT_EQ(json.dump(), R"({"task":"qa","grounding":"description","max_description_chars":600})");
  const PromptFormat back = prompt_format_from_json(json);
  EXPECT_EQ(back.task, Task::kQa);
  EXPECT_EQ(back.qa.grounding, Grounding::kDescription);
  EXPECT_EQ(back.qa.max_description_chars, 600u);
  EXPECT_THROW(prompt_format_from_json(nlohmann::json::parse(R"({"task":"qa"})")),
               std::invalid_argument);
  EXPECT_THROW(prompt_format_from_json(nlohmann::json::parse(
                   R"({"task":"qa","grounding":"all","max_description_chars":600})")),
               std::invalid_argument);

  const testing::TempDir temp;
  const std::filesystem::path& dir = temp.path();
  EXPECT_EQ(read_prompt_format(dir).qa.grounding, Grounding::kNone);
  std::ofstream(dir / kPromptFormatFile) << json.dump();
  EXPECT_EQ(read_prompt_format(dir).qa.max_description_chars, 600u);
  std::ofstream(dir / kPromptFormatFile) << "{";
  EXPECT_THROW(read_prompt_format(dir), std::runtime_error);
}

// The end token an adapter's completions ended with is recorded with what
// measured it, read back, and stopped at beside the tokenizer's EOS; an old
// file without one means the EOS alone.
TEST(PromptFormat, TheEndTokenRoundTripsAndGenerationStopsAtIt) {
  const PromptFormat format{.task = Task::kQa,
                            .qa = {},
                            .end = {.id = 1,
                                    .piece = "<s>",
                                    .chosen_by = "auto",
                                    .texts = 32,
                                    .mean_logprob = {{"<s>", -3.5}, {"</s>", -24.25}}}};
  const nlohmann::ordered_json json = prompt_format_to_json(format);
  EXPECT_EQ(json["end_token"].dump(), R"({"id":1,"piece":"<s>","chosen_by":"auto","texts":32,)"
                                      R"("mean_logprob":{"</s>":-24.25,"<s>":-3.5}})");
  const PromptFormat back = prompt_format_from_json(json);
  EXPECT_EQ(back.end.id, 1);
  EXPECT_EQ(back.end.piece, "<s>");
  EXPECT_EQ(back.end.texts, 32);
  EXPECT_EQ(back.end.mean_logprob, format.end.mean_logprob);
  EXPECT_EQ(prompt_format_to_json(back), json);
  EXPECT_FALSE(prompt_format_from_json(prompt_format_to_json(PromptFormat{})).end.recorded());
  for (const char* bad :
       {R"({"id":-1,"piece":"<s>","chosen_by":"auto"})", R"({"id":1,"chosen_by":"auto"})",
        R"({"id":1,"piece":"<s>"})",
        R"({"id":1,"piece":"<s>","chosen_by":"auto","mean_logprob":{"<s>":"x"}})"}) {
    nlohmann::json with = prompt_format_to_json(PromptFormat{});
    with["end_token"] = nlohmann::json::parse(bad);
    EXPECT_THROW(prompt_format_from_json(with), std::invalid_argument) << bad;
  }

  const std::filesystem::path model = testing::shared_path("models/stories260K-hf");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << model << " not found";
  const auto tokenizer = models::load_tokenizer(model);
  EXPECT_EQ(stop_ids(PromptFormat{}, *tokenizer), std::vector<int64_t>{2});
  EXPECT_EQ(stop_ids(format, *tokenizer), (std::vector<int64_t>{2, 1}));
  PromptFormat other = format;
  other.end.piece = "<|endoftext|>";
  testing::expect_throw_naming<std::runtime_error>(
      [&] { stop_ids(other, *tokenizer); },
      "ends its answers with token 1 '<|endoftext|>', which this tokenizer spells '<s>'");
  other.end.id = 70000;
  testing::expect_throw_naming<std::runtime_error>([&] { stop_ids(other, *tokenizer); },
                                                   "does not have (512 tokens)");
}

}  // namespace
}  // namespace vitrine::prompts
