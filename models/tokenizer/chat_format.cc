// Chat-family detection and prompt rendering; see the header.
#include "models/tokenizer/chat_format.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "common/strings.h"
#include "common/text_file.h"

namespace vitrine::models {
namespace {

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// Llama-3's template trims message contents; the others keep them verbatim.
std::string trimmed(std::string_view s) {
  return std::string(trim(s));
}

}  // namespace

ChatFamily chat_family_from_template(std::string_view chat_template) {
  if (contains(chat_template, "<|start_header_id|>")) return ChatFamily::kLlama3;
  if (contains(chat_template, "<|im_start|>")) return ChatFamily::kChatMl;
  if (contains(chat_template, "<|user|>") && contains(chat_template, "<|assistant|>"))
    return ChatFamily::kZephyr;
  if (contains(chat_template, "[INST]"))
    return contains(chat_template, "<<SYS>>") ? ChatFamily::kLlama2 : ChatFamily::kMistral;
  return ChatFamily::kPlain;
}

ChatFamily detect_chat_family(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "tokenizer_config.json";
  if (!std::filesystem::is_regular_file(path)) return ChatFamily::kPlain;
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(read_whole_file(path, "chat format"));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path.string() + ": not valid JSON (" + e.what() + ")");
  }
  const auto it = config.find("chat_template");
  if (it == config.end()) return ChatFamily::kPlain;
  if (it->is_string()) return chat_family_from_template(it->get<std::string>());
  // Newer files hold a list of {"name", "template"}; the "default" one counts.
  if (it->is_array()) {
    for (const auto& entry : *it)
      if (entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string())
        return chat_family_from_template(entry["template"].get<std::string>());
  }
  return ChatFamily::kPlain;
}

std::string_view chat_family_name(ChatFamily family) {
  switch (family) {
    case ChatFamily::kLlama3:
      return "llama3";
    case ChatFamily::kChatMl:
      return "chatml";
    case ChatFamily::kLlama2:
      return "llama2";
    case ChatFamily::kMistral:
      return "mistral";
    case ChatFamily::kZephyr:
      return "zephyr";
    case ChatFamily::kPlain:
      break;
  }
  return "plain";
}

std::string render_chat_prompt(ChatFamily family, const ChatTurn& turn) {
  const bool has_system = !turn.system.empty();
  std::string out;
  switch (family) {
    case ChatFamily::kLlama3:
      if (has_system)
        out +=
            "<|start_header_id|>system<|end_header_id|>\n\n" + trimmed(turn.system) + "<|eot_id|>";
      out += "<|start_header_id|>user<|end_header_id|>\n\n" + trimmed(turn.user) + "<|eot_id|>";
      out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    case ChatFamily::kChatMl:
      if (has_system) out += "<|im_start|>system\n" + turn.system + "<|im_end|>\n";
      out += "<|im_start|>user\n" + turn.user + "<|im_end|>\n<|im_start|>assistant\n";
      return out;
    case ChatFamily::kLlama2:
      out = "[INST] ";
      if (has_system) out += "<<SYS>>\n" + turn.system + "\n<</SYS>>\n\n";
      out += trimmed(turn.user) + " [/INST]";
      return out;
    case ChatFamily::kMistral:
      out = "[INST] ";
      if (has_system) out += turn.system + "\n\n";
      out += turn.user + " [/INST]";
      return out;
    case ChatFamily::kZephyr:
      if (has_system) out += "<|system|>\n" + turn.system + "</s>\n";
      out += "<|user|>\n" + turn.user + "</s>\n<|assistant|>\n";
      return out;
    case ChatFamily::kPlain:
      break;
  }
  if (has_system) out += turn.system + "\n\n";
  out += "### Instruction:\n" + turn.user + "\n\n### Response:\n";
  return out;
}

std::vector<std::string> chat_stop_strings(ChatFamily family) {
  switch (family) {
    case ChatFamily::kLlama3:
      return {"<|eot_id|>"};
    case ChatFamily::kChatMl:
      return {"<|im_end|>", "<|endoftext|>"};
    case ChatFamily::kLlama2:
    case ChatFamily::kMistral:
      return {"</s>", "[INST]"};
    case ChatFamily::kZephyr:
      return {"</s>", "<|user|>"};
    case ChatFamily::kPlain:
      break;
  }
  return {"### Instruction:"};
}

}  // namespace vitrine::models
