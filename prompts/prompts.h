// Prompt formats: the tasks the adapters are tuned for, the JSON fields of
// their task files, and the (system, user) turn each adapter is asked with.
// Training (training/examples.h) and serving (the agents) both build
// their prompts here, so an adapter sees at serving the text it learnt from.
//
// The turn is rendered in the model's chat format by
// models::render_chat_prompt. Not goals: conversations (the daemon renders
// a conversation's earlier turns before the task turn and appends a
// client's system message to the task's; router/answerer.h), few-shot
// examples, per-language system prompts.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "models/tokenizer/chat_format.h"

namespace vitrine::prompts {

enum class Task {
  kDescribe,  // title -> the product's description (tasks/describe)
  kQa,        // question about a product -> answer (tasks/qa)
};

// "describe" or "qa"; parse_task throws std::invalid_argument naming the value.
std::string_view task_name(Task task);
Task parse_task(std::string_view name);

// The JSON keys of a task line's input and expected output:
// prompt/completion (describe), question/answer (qa).
struct TaskFields {
  const char* input;
  const char* output;
};
TaskFields task_fields(Task task);

// The system prompt and user message of a task's request: the same text at
// training and at serving time, so the adapter sees at serving what it learnt.
models::ChatTurn task_turn(Task task, std::string_view input);

// What a qa prompt carries of the product the question is about. An
// adapter is trained with one grounding and served with the same
// (prompts/prompt_format.h records it beside the adapter), so it sees at
// serving the prompt it learnt from.
enum class Grounding {
  kNone,         // the question alone: closed-book, the adapter answers from what it learnt
  kTitle,        // the product's title before the question
  kDescription,  // its title and description (cut to max_description_chars) before the question
};
// "none", "title", "description". parse_grounding throws std::invalid_argument
// naming the value; the old name "title_and_description" is refused with
// the hint that it is now "description".
std::string_view grounding_name(Grounding grounding);
Grounding parse_grounding(std::string_view name);

// How an adapter's qa prompts are built: the same at training and serving.
struct QaFormat {
  Grounding grounding = Grounding::kNone;
  size_t max_description_chars = 1200;  // descriptions are cut at a word boundary after this
                                        // many bytes (cut_description): bounds the prompt's
                                        // tokens, and must leave room for the answer
};

// The catalogue product a question is about.
struct Product {
  std::string_view title;
  std::string_view description;  // may be empty: the title alone grounds the prompt
};

// The qa turn for `question` in `format`: task_turn(kQa, question) when the
// grounding is kNone or no product is known, otherwise the product written
// before the question:
//
//   Product: <title>
//   Description: <description cut to max_description_chars>   (kDescription, not empty)
//
//   <question>
//
// Same system prompt as task_turn(kQa, ...). Training (training/examples.h)
// and serving (agents/qa_agent.h) both call this, so an adapter trained with
// a grounding is asked in exactly that format. Deterministic.
models::ChatTurn qa_turn(std::string_view question, const QaFormat& format,
                         const std::optional<Product>& product);

// The grounded user message above, with `description` used as given (empty:
// title only). qa_turn is the one to call; this is its last step.
models::ChatTurn grounded_qa_turn(std::string_view question, std::string_view title,
                                  std::string_view description = {});

// `text` cut to at most `max_chars` bytes at a word boundary, never inside
// a UTF-8 sequence, with "..." appended when cut. Deterministic.
std::string cut_description(std::string_view text, size_t max_chars);

}  // namespace vitrine::prompts
