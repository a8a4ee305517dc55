#include "training/examples.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "training/lm_loss.h"

namespace vitrine::training {
namespace fs = std::filesystem;

ExampleSet load_examples(const fs::path& file, prompts::Task task,
                         const models::Tokenizer& tokenizer, models::ChatFamily family,
                         int64_t max_seq_len, int64_t limit) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", file.string()));
  const auto [input_key, output_key] = prompts::task_fields(task);
  const std::vector<int32_t> eos = tokenizer.eos_ids();
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
    const std::string prompt = models::render_chat_prompt(
        family, prompts::task_turn(task, j[input_key].get<std::string>()));
    ex.ids = tokenizer.encode(prompt, /*add_bos=*/true);
    ex.prompt_len = static_cast<int64_t>(ex.ids.size());
    // The completion follows the prompt's text directly, as generation continues it.
    const std::vector<int32_t> whole =
        tokenizer.encode(prompt + j[output_key].get<std::string>(), /*add_bos=*/true);
    // Tokenisers may merge across the boundary; keep the prompt's ids and
    // take the rest of the whole text's ids as the completion.
    std::vector<int32_t> completion(whole.begin() + std::min(whole.size(), ex.ids.size()),
                                    whole.end());
    if (!eos.empty()) completion.push_back(eos.front());
    if (ex.prompt_len + 1 > max_seq_len) {
      ++set.dropped_long_prompt;
      continue;
    }
    const int64_t room = max_seq_len - ex.prompt_len;
    if (static_cast<int64_t>(completion.size()) > room) {
      completion.resize(static_cast<size_t>(room));
      ++set.truncated;
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
