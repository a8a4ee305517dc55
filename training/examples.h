// Training examples from the task files of `vitrine prepare`: each turned
// into the prompt the daemon will ask (prompts/prompts.h, rendered in the
// model's chat format or a plain instruction format) and the completion to
// learn, tokenised, with the loss on the completion only; then packed into
// rows of the maximum sequence length, several examples per row, each
// attending only to itself.
//
// Not goals: multi-turn examples, on-the-fly tokenisation in a data loader
// thread (tokenising the tasks takes seconds next to training's minutes).
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "models/tokenizer/chat_format.h"
#include "models/tokenizer/tokenizer.h"
#include "prompts/prompts.h"
#include "training/lora_trainer.h"

namespace vitrine::training {

struct Example {
  std::string uid;
  std::vector<int32_t> ids;  // BOS, prompt, completion, EOS
  int64_t prompt_len = 0;    // ids before the completion: not targets
};

struct ExampleSet {
  std::vector<Example> examples;
  int64_t read = 0;                 // lines read
  int64_t truncated = 0;            // completions cut to fit max_seq_len: at the end of
                                    // the last sentence that fits, keeping their EOS
  int64_t cut_mid_sentence = 0;     // of those, cut inside their first sentence (no EOS)
  int64_t dropped_long_prompt = 0;  // prompts that left no room for a completion
};

// Reads `file` (tasks/<task>/<split>.jsonl), at most `limit` lines (0 = all).
// Throws std::runtime_error naming the file and line for a bad line.
ExampleSet load_examples(const std::filesystem::path& file, prompts::Task task,
                         const models::Tokenizer& tokenizer, models::ChatFamily family,
                         int64_t max_seq_len, int64_t limit = 0);

// Rows of at most `max_seq_len` tokens. With packing, examples are placed in
// order into the first row with room (first fit over the open rows); without,
// one example per row.
struct PackedRow {
  std::vector<int64_t> ids, labels, segments;  // labels -100 outside completions
};
std::vector<PackedRow> pack_examples(const std::vector<Example>& examples, int64_t max_seq_len,
                                     bool packing);

// Shuffles `order` in place: Fisher-Yates on mt19937_64, whose sequence the
// C++ standard fixes, so a seed gives the same order on every machine.
void shuffle_order(std::vector<size_t>& order, std::mt19937_64& rng);

// A batch of rows padded to the longest (pad id 0, label -100, a segment
// of its own), with segments so packed examples stay apart.
Batch make_batch(const std::vector<PackedRow>& rows, size_t begin, size_t end);

}  // namespace vitrine::training
