#include "training/examples.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/strings.h"
#include "training/lm_loss.h"

namespace vitrine::training {
namespace fs = std::filesystem;

namespace {

// A completion to tokenise after its prompt.
struct Completion {
  const models::Tokenizer& tokenizer;
  std::string prompt;
  std::string text;
  int32_t end = -1;  // the end token; -1: none

  // The ids of text[0, chars) as they follow the prompt, then the end token.
  // The prompt's `prompt_ids` ids are skipped: tokenisers may merge across
  // the boundary, so the completion is what the whole text adds to them.
  std::vector<int32_t> ids(size_t chars, size_t prompt_ids) const {
    const std::vector<int32_t> whole =
        tokenizer.encode(prompt + text.substr(0, chars), /*add_bos=*/true);
    std::vector<int32_t> out(whole.begin() + std::min(whole.size(), prompt_ids), whole.end());
    if (end >= 0) out.push_back(end);
    return out;
  }
};

// Offsets just past each sentence's end in `text`: a '.', '!' or '?' (with
// closing quotes or brackets after it) at the end or before white space.
std::vector<size_t> sentence_ends(std::string_view text) {
  std::vector<size_t> ends;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '.' && text[i] != '!' && text[i] != '?') continue;
    size_t end = i + 1;
    while (end < text.size() && (text[end] == '"' || text[end] == '\'' || text[end] == ')')) ++end;
    if (end == text.size() || is_space(text[end])) ends.push_back(end);
  }
  return ends;
}

struct FittedCompletion {
  std::vector<int32_t> ids;
  bool at_sentence_end = false;
};

// The longest start of the completion that fits `room` tokens with its
// end token and ends a sentence, so that the adapter learns to end answers
// rather than to be cut off. When not even the first sentence fits, the
// first `room` tokens, without end token (the answer really goes on).
FittedCompletion fit_completion(const Completion& c, size_t prompt_ids, int64_t room,
                                const std::vector<int32_t>& whole) {
  const std::vector<size_t> ends = sentence_ends(c.text);
  // Longest first; a candidate costs one tokenisation, and usually the
  // first or second that is short enough in characters fits.
  const double chars_per_token =
      static_cast<double>(c.text.size()) / static_cast<double>(std::max<size_t>(1, whole.size()));
  const auto guess = static_cast<size_t>(1.25 * chars_per_token * static_cast<double>(room));
  for (auto it = ends.rbegin(); it != ends.rend(); ++it) {
    if (*it > guess) continue;
    std::vector<int32_t> ids = c.ids(*it, prompt_ids);
    if (static_cast<int64_t>(ids.size()) <= room) return {std::move(ids), true};
  }
  std::vector<int32_t> cut(whole.begin(), whole.begin() + room);
  return {std::move(cut), false};
}

}  // namespace

ProductTexts read_product_texts(const fs::path& describe_file) {
  std::ifstream in(describe_file);
  if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", describe_file.string()));
  const auto [title_key, description_key] = prompts::task_fields(prompts::Task::kDescribe);
  ProductTexts products;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.value("uid", nlohmann::json()).is_string() ||
        !j.value(title_key, nlohmann::json()).is_string() ||
        !j.value(description_key, nlohmann::json()).is_string()) {
      throw std::runtime_error(
          fmt::format("'{}' line {}: not a describe task line", describe_file.string(), n));
    }
    products[j["uid"].get<std::string>()] = {j[title_key].get<std::string>(),
                                             j[description_key].get<std::string>()};
  }
  return products;
}

fs::path product_texts_file(const fs::path& dataset, std::string_view split) {
  return dataset / "tasks" / std::string(prompts::task_name(prompts::Task::kDescribe)) /
         fmt::format("{}.jsonl", split);
}

TaskPrompter::TaskPrompter(prompts::Task task) : format_{.task = task, .qa = {}, .end = {}} {}

TaskPrompter::TaskPrompter(const prompts::PromptFormat& format,
                           std::shared_ptr<const ProductTexts> products)
    : format_(format), products_(std::move(products)) {
  if (format_.task == prompts::Task::kQa && format_.qa.grounding != prompts::Grounding::kNone &&
      products_ == nullptr) {
    throw std::invalid_argument("grounded qa prompts need the products' texts");
  }
}

models::ChatTurn TaskPrompter::turn(std::string_view uid, std::string_view input) const {
  if (format_.task != prompts::Task::kQa || format_.qa.grounding == prompts::Grounding::kNone) {
    return prompts::task_turn(format_.task, input);
  }
  const auto it = products_->find(std::string(uid));
  if (it == products_->end()) {
    throw std::runtime_error(fmt::format(
        "product '{}' is not in the split's describe task file: grounded qa needs its title and "
        "description (a dataset from an older prepare?)",
        uid));
  }
  return prompts::qa_turn(
      input, format_.qa,
      prompts::Product{.title = it->second.title, .description = it->second.description});
}

ExampleSet load_examples(const fs::path& file, const TaskPrompter& prompter,
                         const models::Tokenizer& tokenizer, models::ChatFamily family,
                         int64_t max_seq_len, int64_t limit) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", file.string()));
  const auto [input_key, output_key] = prompts::task_fields(prompter.task());
  const std::vector<int32_t> eos = tokenizer.eos_ids();
  const prompts::EndToken& recorded = prompter.format().end;
  const int32_t end = recorded.recorded() ? recorded.id : (eos.empty() ? -1 : eos.front());
  ExampleSet set;
  std::string line;
  while ((limit == 0 || set.read < limit) && std::getline(in, line)) {
    ++set.read;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(
          fmt::format("'{}' line {}: not JSON ({})", file.string(), set.read, e.what()));
    }
    if (!j.contains(input_key) || !j[input_key].is_string() || !j.contains(output_key) ||
        !j[output_key].is_string()) {
      throw std::runtime_error(fmt::format("'{}' line {}: expected string fields '{}' and '{}'",
                                           file.string(), set.read, input_key, output_key));
    }
    Example ex;
    ex.uid = j.value("uid", "");
    models::ChatTurn turn;
    try {
      turn = prompter.turn(ex.uid, j[input_key].get<std::string>());
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(fmt::format("'{}' line {}: {}", file.string(), set.read, e.what()));
    }
    const Completion c{.tokenizer = tokenizer,
                       .prompt = models::render_chat_prompt(family, turn),
                       .text = j[output_key].get<std::string>(),
                       .end = end};
    ex.ids = tokenizer.encode(c.prompt, /*add_bos=*/true);
    ex.prompt_len = static_cast<int64_t>(ex.ids.size());
    if (ex.prompt_len + 1 > max_seq_len) {
      ++set.dropped_long_prompt;
      continue;
    }
    const int64_t room = max_seq_len - ex.prompt_len;
    std::vector<int32_t> completion = c.ids(c.text.size(), ex.ids.size());
    ex.ended = end >= 0;
    if (static_cast<int64_t>(completion.size()) > room) {
      const FittedCompletion fitted = fit_completion(c, ex.ids.size(), room, completion);
      completion = fitted.ids;
      ++set.truncated;
      if (!fitted.at_sentence_end) {
        ++set.cut_mid_sentence;
        ex.ended = false;
      }
    }
    ex.ids.insert(ex.ids.end(), completion.begin(), completion.end());
    set.examples.push_back(std::move(ex));
  }
  return set;
}

std::vector<PackedRow> pack_examples(const std::vector<Example>& examples, int64_t max_seq_len,
                                     bool packing) {
  std::vector<PackedRow> rows;
  // First fit over the last kOpenWindow rows: older rows are nearly full,
  // and the bound keeps packing linear in the number of examples.
  constexpr size_t kOpenWindow = 64;
  for (const Example& ex : examples) {
    const auto n = static_cast<int64_t>(ex.ids.size());
    PackedRow* target = nullptr;
    if (packing) {
      for (size_t r = rows.size() > kOpenWindow ? rows.size() - kOpenWindow : 0; r < rows.size();
           ++r) {
        if (static_cast<int64_t>(rows[r].ids.size()) + n <= max_seq_len) {
          target = &rows[r];
          break;
        }
      }
    }
    if (target == nullptr) {
      rows.emplace_back();
      target = &rows.back();
    }
    const int64_t segment = target->segments.empty() ? 0 : target->segments.back() + 1;
    for (int64_t i = 0; i < n; ++i) {
      target->ids.push_back(ex.ids[static_cast<size_t>(i)]);
      // Position i predicts i + 1 after the model's shift: the label of a
      // token is itself, counted when it is part of the completion.
      target->labels.push_back(i >= ex.prompt_len ? ex.ids[static_cast<size_t>(i)] : kIgnoreLabel);
      target->segments.push_back(segment);
    }
  }
  return rows;
}

void shuffle_order(std::vector<size_t>& order, std::mt19937_64& rng) {
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
}

Batch make_batch(const std::vector<PackedRow>& rows, size_t begin, size_t end) {
  size_t longest = 0;
  for (size_t r = begin; r < end; ++r) longest = std::max(longest, rows[r].ids.size());
  const auto b = static_cast<int64_t>(end - begin), s = static_cast<int64_t>(longest);
  at::Tensor ids = at::zeros({b, s}, at::kLong);
  at::Tensor labels = at::full({b, s}, kIgnoreLabel, at::kLong);
  at::Tensor segments = at::full({b, s}, -1, at::kLong);  // padding: a segment of its own
  for (size_t r = begin; r < end; ++r) {
    const PackedRow& row = rows[r];
    const auto n = static_cast<int64_t>(row.ids.size());
    const auto i = static_cast<int64_t>(r - begin);
    ids[i].narrow(0, 0, n).copy_(at::tensor(row.ids));
    labels[i].narrow(0, 0, n).copy_(at::tensor(row.labels));
    segments[i].narrow(0, 0, n).copy_(at::tensor(row.segments));
  }
  return Batch{ids, labels, segments};
}

}  // namespace vitrine::training
