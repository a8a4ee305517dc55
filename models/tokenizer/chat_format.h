// Prompt formats: which chat format a checkpoint was tuned with, and a
// (system, user) turn rendered in it, ready for the generation prompt.
//
// The family is recognised from tokenizer_config.json's chat_template by its
// marker tokens (Llama-3 headers, ChatML, [INST], Zephyr's <|user|>); a model
// without a known template gets a plain instruction format. Rendered text
// starts after BOS: encode it with add_bos = true, so the BOS id is exact for
// every tokenizer (SentencePiece reads a literal "<s>" as text).
//
// Not a goal: a Jinja interpreter, multi-turn histories, tool calls, or
// Qwen3's <think> blocks (the assistant turn is opened plainly).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine::models {

enum class ChatFamily {
  kLlama3,   // <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
  kChatMl,   // <|im_start|>role\n...<|im_end|>\n (Qwen)
  kLlama2,   // [INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST]
  kMistral,  // [INST] system\n\nuser [/INST] (no <<SYS>> block)
  kZephyr,   // <|system|>\n...</s>\n<|user|>\n...</s>\n<|assistant|>\n (TinyLlama)
  kPlain,    // ### Instruction: / ### Response: for base models
};

struct ChatTurn {
  std::string system;  // "" = no system prompt
  std::string user;    // the user's message
};

// Family of a Jinja chat_template string; kPlain when none is recognised.
ChatFamily chat_family_from_template(std::string_view chat_template);

// Family named by `model_dir`/tokenizer_config.json's chat_template; kPlain
// when the file or the key is absent. Throws std::runtime_error naming the
// file when it is not valid JSON.
ChatFamily detect_chat_family(const std::filesystem::path& model_dir);

// "llama3", "chatml", "llama2", "mistral", "zephyr", "plain".
std::string_view chat_family_name(ChatFamily family);

// The prompt up to the opening of the assistant's answer (without BOS).
std::string render_chat_prompt(ChatFamily family, const ChatTurn& turn);

// Text that ends the assistant's turn in this format (stop strings for
// generation, in addition to the tokenizer's EOS ids).
std::vector<std::string> chat_stop_strings(ChatFamily family);

}  // namespace vitrine::models
