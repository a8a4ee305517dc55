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

// The qa turn with the product it is about written before the question
// (grounding), so that the model answers from the catalogue and not only
// from what the adapter remembers:
//
//   Product: <title>
//   Description: <description>      (only when `description` is not empty)
//
//   <question>
//
// Same system prompt as task_turn(kQa, ...); the user message ends with the
// question as in training. This is an extension of the training prompt: the
// qa adapter was never tuned on it, so a grounded answer is the base model's
// reading ability plus the adapter's style, not a trained behaviour.
// Deterministic: the same arguments give the same text.
models::ChatTurn grounded_qa_turn(std::string_view question, std::string_view title,
                                  std::string_view description = {});

}  // namespace vitrine::prompts
