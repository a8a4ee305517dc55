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

namespace {

// Qwen3's template keeps only what follows an earlier answer's "</think>".
std::string_view without_thinking(std::string_view answer) {
  const size_t end = answer.rfind("</think>");
  if (end == std::string_view::npos) return answer;
  answer.remove_prefix(end + std::string_view("</think>").size());
  while (!answer.empty() && answer.front() == '\n') answer.remove_prefix(1);
  return answer;
}

// A message of a family that frames every message alike, by role
// ("system", "user" or "assistant").
using Frame = std::string (*)(std::string_view role, std::string_view text);

std::string llama3_frame(std::string_view role, std::string_view text) {
  return "<|start_header_id|>" + std::string(role) + "<|end_header_id|>\n\n" + trimmed(text) +
         "<|eot_id|>";
}

std::string chatml_frame(std::string_view role, std::string_view text) {
  if (role == "assistant") text = without_thinking(text);
  return "<|im_start|>" + std::string(role) + "\n" + std::string(text) + "<|im_end|>\n";
}

std::string zephyr_frame(std::string_view role, std::string_view text) {
  return "<|" + std::string(role) + "|>\n" + std::string(text) + "</s>\n";
}

std::string plain_frame(std::string_view role, std::string_view text) {
  const std::string_view head = role == "user"        ? "### Instruction:\n"
                                : role == "assistant" ? "### Response:\n"
                                                      : "";
  return std::string(head) + std::string(text) + "\n\n";
}

// System, history and the current user message, each framed, then the
// opening of the assistant's answer.
std::string render_framed(const ChatTurn& turn, Frame frame, std::string_view opening) {
  std::string out;
  if (!turn.system.empty()) out += frame("system", turn.system);
  for (const ChatMessage& m : turn.history)
    out += frame(m.role == ChatRole::kUser ? "user" : "assistant", m.text);
  return out + frame("user", turn.user) + std::string(opening);
}

// Llama-2 and Mistral: each user message in [INST] ... [/INST], the system
// prompt inside the first one; each answer ends with EOS.
std::string render_inst(const ChatTurn& turn, bool llama2) {
  std::string out;
  bool first_user = true;
  auto user = [&](std::string_view text) {
    std::string content(text);
    if (first_user && !turn.system.empty()) {
      content = llama2 ? "<<SYS>>\n" + turn.system + "\n<</SYS>>\n\n" + content
                       : turn.system + "\n\n" + content;
    }
    first_user = false;
    // Llama-2's template strips the whole content and starts every user
    // message with BOS (the first one's comes from the tokenizer).
    if (llama2 && !out.empty()) out += "<s>";
    out += "[INST] ";
    out += llama2 ? trim(content) : std::string_view(content);
    out += " [/INST]";
  };
  for (const ChatMessage& m : turn.history) {
    if (m.role == ChatRole::kUser) {
      user(m.text);
    } else if (llama2) {
      out.append(" ").append(trim(m.text)).append(" </s>");
    } else {
      out.append(m.text).append("</s>");
    }
  }
  user(turn.user);
  return out;
}

}  // namespace

std::string render_chat_prompt(ChatFamily family, const ChatTurn& turn) {
  switch (family) {
    case ChatFamily::kLlama3:
      return render_framed(turn, llama3_frame, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    case ChatFamily::kChatMl:
      return render_framed(turn, chatml_frame, "<|im_start|>assistant\n");
    case ChatFamily::kLlama2:
      return render_inst(turn, /*llama2=*/true);
    case ChatFamily::kMistral:
      return render_inst(turn, /*llama2=*/false);
    case ChatFamily::kZephyr:
      return render_framed(turn, zephyr_frame, "<|assistant|>\n");
    case ChatFamily::kPlain:
      break;
  }
  return render_framed(turn, plain_frame, "### Response:\n");
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
