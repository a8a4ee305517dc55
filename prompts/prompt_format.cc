#include "prompts/prompt_format.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/text_file.h"

namespace vitrine::prompts {

namespace {

nlohmann::ordered_json end_token_to_json(const EndToken& end) {
  nlohmann::ordered_json out = {{"id", end.id}, {"piece", end.piece}, {"chosen_by", end.chosen_by}};
  if (end.chosen_by == "auto") {
    out["texts"] = end.texts;
    out["mean_logprob"] = end.mean_logprob;
  }
  return out;
}

EndToken end_token_from_json(const nlohmann::json& json) {
  if (!json.is_object())
    throw std::invalid_argument("prompt format 'end_token': expected an object");
  EndToken end;
  const auto id = json.find("id");
  if (id == json.end() || !id->is_number_integer() || id->get<int64_t>() < 0 ||
      id->get<int64_t>() > INT32_MAX) {
    throw std::invalid_argument("prompt format 'end_token.id': expected an integer >= 0");
  }
  end.id = id->get<int32_t>();
  for (auto [key, field] :
       {std::pair{"piece", &end.piece}, std::pair{"chosen_by", &end.chosen_by}}) {
    const auto it = json.find(key);
    if (it == json.end() || !it->is_string()) {
      throw std::invalid_argument(
          fmt::format("prompt format 'end_token.{}': expected a string", key));
    }
    *field = it->get<std::string>();
  }
  if (const auto texts = json.find("texts"); texts != json.end()) {
    if (!texts->is_number_integer() || texts->get<int64_t>() < 0) {
      throw std::invalid_argument("prompt format 'end_token.texts': expected an integer >= 0");
    }
    end.texts = texts->get<int64_t>();
  }
  if (const auto measured = json.find("mean_logprob"); measured != json.end()) {
    if (!measured->is_object()) {
      throw std::invalid_argument("prompt format 'end_token.mean_logprob': expected an object");
    }
    for (const auto& [piece, value] : measured->items()) {
      if (!value.is_number()) {
        throw std::invalid_argument(
            fmt::format("prompt format 'end_token.mean_logprob.{}': expected a number", piece));
      }
      end.mean_logprob[piece] = value.get<double>();
    }
  }
  return end;
}

}  // namespace

nlohmann::ordered_json prompt_format_to_json(const PromptFormat& format) {
  nlohmann::ordered_json out = {{"task", task_name(format.task)},
                                {"grounding", grounding_name(format.qa.grounding)},
                                {"max_description_chars", format.qa.max_description_chars}};
  if (format.end.recorded()) out["end_token"] = end_token_to_json(format.end);
  return out;
}

PromptFormat prompt_format_from_json(const nlohmann::json& json) {
  if (!json.is_object()) throw std::invalid_argument("prompt format: expected an object");
  auto text = [&](const char* key) {
    if (!json.contains(key) || !json[key].is_string()) {
      throw std::invalid_argument(fmt::format("prompt format '{}': expected a string", key));
    }
    return json[key].get<std::string>();
  };
  PromptFormat format;
  format.task = parse_task(text("task"));
  format.qa.grounding = parse_grounding(text("grounding"));
  const auto chars = json.find("max_description_chars");
  if (chars == json.end() || !chars->is_number_unsigned() || chars->get<size_t>() < 16) {
    throw std::invalid_argument("prompt format 'max_description_chars': expected an integer >= 16");
  }
  format.qa.max_description_chars = chars->get<size_t>();
  if (const auto end = json.find("end_token"); end != json.end()) {
    format.end = end_token_from_json(*end);
  }
  return format;
}

PromptFormat read_prompt_format(const std::filesystem::path& adapter_dir, Task task) {
  const std::filesystem::path file = adapter_dir / kPromptFormatFile;
  if (!std::filesystem::exists(file)) return PromptFormat{.task = task, .qa = {}, .end = {}};
  try {
    return prompt_format_from_json(nlohmann::json::parse(read_whole_file(file, "prompt format")));
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("'{}': {}", file.string(), e.what()));
  }
}

std::vector<int64_t> stop_ids(const PromptFormat& format, const models::Tokenizer& tokenizer) {
  std::vector<int64_t> ids;
  for (const int32_t id : tokenizer.eos_ids()) ids.push_back(id);
  const EndToken& end = format.end;
  if (!end.recorded() || std::find(ids.begin(), ids.end(), end.id) != ids.end()) return ids;
  if (static_cast<size_t>(end.id) >= tokenizer.vocab_size() ||
      tokenizer.id_to_piece(end.id) != end.piece) {
    throw std::runtime_error(fmt::format(
        "the adapter ends its answers with token {} '{}', which this tokenizer {}: it was trained "
        "on another base model",
        end.id, end.piece,
        static_cast<size_t>(end.id) >= tokenizer.vocab_size()
            ? fmt::format("does not have ({} tokens)", tokenizer.vocab_size())
            : fmt::format("spells '{}'", tokenizer.id_to_piece(end.id))));
  }
  ids.push_back(end.id);
  return ids;
}

}  // namespace vitrine::prompts
