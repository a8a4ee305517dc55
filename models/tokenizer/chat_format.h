// Prompt formats: which chat format a checkpoint was tuned with, and a
// conversation (system, earlier user and assistant messages, the current
// user message) rendered in it, ready for the generation prompt.
//
// The family is recognised from tokenizer_config.json's chat_template by its
// marker tokens (Llama-3 headers, ChatML, [INST], Zephyr's <|user|>); a model
// without a known template gets a plain instruction format. Rendered text
// starts after BOS: encode it with add_bos = true, so the BOS id is exact for
// every tokenizer. Past the first turn, Llama-2 writes "</s><s>" between
// turns and Mistral and Zephyr "</s>", as their templates do: tokenizer.json
// models read these as their special ids, a tokenizer.model alone reads
// them as text (as libsentencepiece does).
//
// Multi-turn layouts equal what each family's Hugging Face chat_template
// renders with add_generation_prompt for alternating user/assistant
// messages (tests/models/tokenizer/chat_template_golden.h, made by
// scripts/render_chat_templates.py with jinja2): Llama-3 and Qwen3 from
// ../shared/tokenizers, Llama-2-chat, Mistral-Instruct v0.2 and Zephyr
// from their model repositories' templates. Llama-2's and Mistral's
// templates refuse any other order of roles; here every message renders in
// its place, as llama.cpp's chat formats do, so a client's odd history
// (two user messages in a row) is still answered.
//
// Not a goal: a Jinja interpreter, tool calls, or generating Qwen3's <think>
// blocks (the assistant turn is opened plainly; earlier answers lose theirs,
// as Qwen3's template drops them).
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

enum class ChatRole { kUser, kAssistant };

// An earlier message of a conversation.
struct ChatMessage {
  ChatRole role = ChatRole::kUser;
  std::string text;
};

struct ChatTurn {
  std::string system;                     // "" = no system prompt
  std::string user;                       // the user's current message
  std::vector<ChatMessage> history = {};  // earlier messages, oldest first, before `user`
};

// Family of a Jinja chat_template string; kPlain when none is recognised.
ChatFamily chat_family_from_template(std::string_view chat_template);

// Family named by `model_dir`/tokenizer_config.json's chat_template; kPlain
// when the file or the key is absent. Throws std::runtime_error naming the
// file when it is not valid JSON.
ChatFamily detect_chat_family(const std::filesystem::path& model_dir);

// "llama3", "chatml", "llama2", "mistral", "zephyr", "plain".
std::string_view chat_family_name(ChatFamily family);

// The prompt up to the opening of the assistant's answer (without BOS):
// system, history, then the current user message.
std::string render_chat_prompt(ChatFamily family, const ChatTurn& turn);

// Text that ends the assistant's turn in this format (stop strings for
// generation, in addition to the tokenizer's EOS ids).
std::vector<std::string> chat_stop_strings(ChatFamily family);

}  // namespace vitrine::models
