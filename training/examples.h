// Training examples from the task files of `vitrine prepare`: each turned
// into the prompt the daemon will ask (prompts/prompts.h, rendered in the
// model's chat format or a plain instruction format; a grounded qa adapter's
// with the product's title and description) and the completion to learn,
// tokenised, with the loss on the completion only; then packed into rows of
// the maximum sequence length, several examples per row, each attending
// only to itself.
//
// Not goals: multi-turn examples, on-the-fly tokenisation in a data loader
// thread (tokenising the tasks takes seconds next to training's minutes).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "models/tokenizer/chat_format.h"
#include "models/tokenizer/tokenizer.h"
#include "prompts/prompt_format.h"
#include "prompts/prompts.h"
#include "training/lora_trainer.h"

namespace vitrine::training {

struct Example {
  std::string uid;
  std::vector<int32_t> ids;  // BOS, prompt, completion, end token
  int64_t prompt_len = 0;    // ids before the completion: not targets
  bool ended = false;        // the completion ends with its end token (not cut, not endless)
};

struct ExampleSet {
  std::vector<Example> examples;
  int64_t read = 0;                 // lines read
  int64_t truncated = 0;            // completions cut to fit max_seq_len: at the end of
                                    // the last sentence that fits, keeping their end token
  int64_t cut_mid_sentence = 0;     // of those, cut inside their first sentence (no end token)
  int64_t dropped_long_prompt = 0;  // prompts that left no room for a completion
};

// The title and description of each product of a split, by uid, from
// tasks/describe/<split>.jsonl (prompt and completion: the catalogue's
// title and content, as prepare wrote both). Training cannot open
// catalog.sqlite (no SQLite here), and needs no more than these.
struct ProductText {
  std::string title, description;
};
using ProductTexts = std::unordered_map<std::string, ProductText>;
ProductTexts read_product_texts(const std::filesystem::path& describe_file);
// tasks/describe/<split>.jsonl of `dataset`.
std::filesystem::path product_texts_file(const std::filesystem::path& dataset,
                                         std::string_view split);

// How a task line becomes its chat turn: prompts::task_turn for describe
// and closed-book qa, prompts::qa_turn with the line's product (by its uid)
// for grounded qa, exactly as the daemon's qa agent builds it.
class TaskPrompter {
 public:
  // The closed-book prompts of `task` (implicit: a task alone means those).
  TaskPrompter(prompts::Task task);  // NOLINT(google-explicit-constructor)
  // qa prompts in `format`, grounded in `products` (needed unless the
  // grounding is none).
  TaskPrompter(const prompts::PromptFormat& format, std::shared_ptr<const ProductTexts> products);

  // Throws std::runtime_error when the prompt is grounded and `uid` is not
  // among the products.
  models::ChatTurn turn(std::string_view uid, std::string_view input) const;
  prompts::Task task() const { return format_.task; }
  const prompts::PromptFormat& format() const { return format_; }

 private:
  prompts::PromptFormat format_;
  std::shared_ptr<const ProductTexts> products_;
};

// Reads `file` (tasks/<task>/<split>.jsonl), at most `limit` lines (0 = all),
// each line's prompt made by `prompter`, each completion ended with the end
// token of its format (the tokenizer's first EOS when none is recorded). Throws std::runtime_error
// naming the file and line for a bad line.
ExampleSet load_examples(const std::filesystem::path& file, const TaskPrompter& prompter,
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
