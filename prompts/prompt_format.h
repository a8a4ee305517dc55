// The prompt format an adapter was trained with, kept beside its PEFT files
// as prompt_format.json, so whoever serves the adapter asks it in that very
// format (the daemon reads it when it loads an adapter version):
//
//   {"task": "qa", "grounding": "description", "max_description_chars": 600,
//    "end_token": {"id": 1, "piece": "<s>", "chosen_by": "auto", "texts": 64,
//                  "mean_logprob": {"<s>": -3.1, "</s>": -23.8}}}
//
// and the token its completions ended with in training, when that is not
// the tokenizer's EOS: some bases learnt another one at a text's end
// (llama2.c's, stories260K among them, put BOS between stories and never
// predicted EOS), and an adapter cannot learn to stop at a token its base
// never produced. Training measures which (training/end_token.h); whoever
// generates with the adapter stops at it besides the tokenizer's EOS.
//
// `vitrine train` writes it into adapters/<name>/, and the trainer
// service's published versions carry it along. An adapter without the file
// (trained elsewhere, or before the file existed) was trained closed-book:
// grounding none. Not goals: describing the chat template (the base
// model's tokenizer_config.json says it) or the system prompt (prompts.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/tokenizer/tokenizer.h"
#include "prompts/prompts.h"

namespace vitrine::prompts {

inline constexpr const char* kPromptFormatFile = "prompt_format.json";

// The token completions end with. Absent (id -1): the tokenizer's EOS.
struct EndToken {
  int32_t id = -1;
  std::string piece;      // the token's piece, checked against the tokenizer that serves
  std::string chosen_by;  // "auto" (measured on the base), "eos" or "bos" (configured)
  int64_t texts = 0;      // auto: how many texts the measure averaged over
  std::map<std::string, double> mean_logprob;  // auto: per candidate piece, at a text's end

  bool recorded() const { return id >= 0; }
};

struct PromptFormat {
  Task task = Task::kQa;  // which task's prompts the adapter learnt
  QaFormat qa;            // how its qa prompts carry the product (qa only)
  EndToken end;           // what its completions ended with
};

nlohmann::ordered_json prompt_format_to_json(const PromptFormat& format);
// Throws std::invalid_argument naming the key for a missing key, a wrong
// type or an unknown value.
PromptFormat prompt_format_from_json(const nlohmann::json& json);

// The format recorded in `adapter_dir`/prompt_format.json; the closed-book
// format of `task` when there is none. Throws std::runtime_error naming the
// file when it is there but unreadable or malformed.
PromptFormat read_prompt_format(const std::filesystem::path& adapter_dir, Task task = Task::kQa);

// The ids generation with an adapter of `format` stops at: the tokenizer's
// EOS ids and the recorded end token. Throws std::runtime_error when the
// recorded token is not `tokenizer`'s (the adapter was trained on another
// base), naming both pieces.
std::vector<int64_t> stop_ids(const PromptFormat& format, const models::Tokenizer& tokenizer);

}  // namespace vitrine::prompts
