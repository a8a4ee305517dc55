#include "prompts/prompt_format.h"

#include <fmt/format.h>

#include <stdexcept>
#include <string>

#include "common/text_file.h"

namespace vitrine::prompts {

nlohmann::ordered_json prompt_format_to_json(const PromptFormat& format) {
  return {{"task", task_name(format.task)},
          {"grounding", grounding_name(format.qa.grounding)},
          {"max_description_chars", format.qa.max_description_chars}};
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
  return format;
}

PromptFormat read_prompt_format(const std::filesystem::path& adapter_dir, Task task) {
  const std::filesystem::path file = adapter_dir / kPromptFormatFile;
  if (!std::filesystem::exists(file)) return PromptFormat{.task = task, .qa = {}};
  try {
    return prompt_format_from_json(nlohmann::json::parse(read_whole_file(file, "prompt format")));
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("'{}': {}", file.string(), e.what()));
  }
}

}  // namespace vitrine::prompts
