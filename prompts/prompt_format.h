// The prompt format an adapter was trained with, kept beside its PEFT files
// as prompt_format.json, so whoever serves the adapter asks it in that very
// format (the daemon reads it when it loads an adapter version):
//
//   {"task": "qa", "grounding": "description", "max_description_chars": 600}
//
// `vitrine train` writes it into adapters/<name>/, and the trainer
// service's published versions carry it along. An adapter without the file
// (trained elsewhere, or before the file existed) was trained closed-book:
// grounding none. Not goals: describing the chat template (the base
// model's tokenizer_config.json says it) or the system prompt (prompts.h).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>

#include "prompts/prompts.h"

namespace vitrine::prompts {

inline constexpr const char* kPromptFormatFile = "prompt_format.json";

struct PromptFormat {
  Task task = Task::kQa;  // which task's prompts the adapter learnt
  QaFormat qa;            // how its qa prompts carry the product (qa only)
};

nlohmann::ordered_json prompt_format_to_json(const PromptFormat& format);
// Throws std::invalid_argument naming the key for a missing key, a wrong
// type or an unknown value.
PromptFormat prompt_format_from_json(const nlohmann::json& json);

// The format recorded in `adapter_dir`/prompt_format.json; the closed-book
// format of `task` when there is none. Throws std::runtime_error naming the
// file when it is there but unreadable or malformed.
PromptFormat read_prompt_format(const std::filesystem::path& adapter_dir, Task task = Task::kQa);

}  // namespace vitrine::prompts
