// Chat-family detection from tokenizer_config.json and prompt rendering,
// single and multi-turn, against the real chat templates' renderings
// (chat_template_golden.h) and down to the special-token ids of the shared
// tokenizers.
#include <gtest/gtest.h>

#include <algorithm>

#include "models/tokenizer/chat_format.h"
#include "models/tokenizer/tokenizer.h"
#include "tests/models/tokenizer/chat_template_golden.h"
#include "tests/support/temp_dir.h"

namespace vitrine::models {
namespace {

using testing::shared_path;

bool has_id(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

size_t count_id(const std::vector<int32_t>& ids, int32_t id) {
  return static_cast<size_t>(std::count(ids.begin(), ids.end(), id));
}

// "What is Dune about?" answered, then "Who wrote it?", under a system prompt.
ChatTurn follow_up() {
  return {.system = "Be brief.",
          .user = "Who wrote it?",
          .history = {{ChatRole::kUser, "What is Dune about?"},
                      {ChatRole::kAssistant, "A desert planet."}}};
}

TEST(TokenizerChatFormat, RecognisesFamiliesFromTemplates) {
  EXPECT_EQ(chat_family_from_template("{{ '<|start_header_id|>' + role }}"), ChatFamily::kLlama3);
  EXPECT_EQ(chat_family_from_template("{{ '<|im_start|>' + message.role }}"), ChatFamily::kChatMl);
  EXPECT_EQ(chat_family_from_template("{{ '[INST] <<SYS>>\\n' + system }}"), ChatFamily::kLlama2);
  EXPECT_EQ(chat_family_from_template("{{ '[INST] ' + content + ' [/INST]' }}"),
            ChatFamily::kMistral);
  EXPECT_EQ(chat_family_from_template("{{ '<|user|>\\n' }}{{ '<|assistant|>' }}"),
            ChatFamily::kZephyr);
  EXPECT_EQ(chat_family_from_template("{{ messages }}"), ChatFamily::kPlain);
}

TEST(TokenizerChatFormat, DetectsFromModelDirectory) {
  testing::TempDir dir;
  EXPECT_EQ(detect_chat_family(dir.path()), ChatFamily::kPlain);  // no file
  testing::write_file(dir / "tokenizer_config.json", R"({"bos_token": "<s>"})");
  EXPECT_EQ(detect_chat_family(dir.path()), ChatFamily::kPlain);  // no template
  testing::write_file(dir / "tokenizer_config.json",
                      R"({"chat_template": [{"name": "default", "template": "<|im_start|>"}]})");
  EXPECT_EQ(detect_chat_family(dir.path()), ChatFamily::kChatMl);
  testing::write_file(dir / "tokenizer_config.json", "{not json");
  EXPECT_THROW(detect_chat_family(dir.path()), std::runtime_error);
  for (const auto& [name, family] :
       {std::pair{"llama3", ChatFamily::kLlama3}, std::pair{"qwen3", ChatFamily::kChatMl},
        std::pair{"mistral-7b-v0.1", ChatFamily::kPlain}}) {
    const auto model_dir = shared_path(std::string("tokenizers/") + name);
    if (!std::filesystem::exists(model_dir))
      GTEST_SKIP() << "shared test data absent: " << model_dir;
    EXPECT_EQ(detect_chat_family(model_dir), family) << name;
  }
}

TEST(TokenizerChatFormat, RendersEachFamily) {
  const ChatTurn turn{"Be brief.", "Describe: Blue Mug"};
  EXPECT_EQ(render_chat_prompt(ChatFamily::kLlama3, turn),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nDescribe: Blue Mug<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(
      render_chat_prompt(ChatFamily::kChatMl, turn),
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nDescribe: Blue Mug<|im_end|>\n"
      "<|im_start|>assistant\n");
  EXPECT_EQ(render_chat_prompt(ChatFamily::kLlama2, turn),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nDescribe: Blue Mug [/INST]");
  EXPECT_EQ(render_chat_prompt(ChatFamily::kMistral, {"", "Hi"}), "[INST] Hi [/INST]");
  EXPECT_EQ(render_chat_prompt(ChatFamily::kZephyr, turn),
            "<|system|>\nBe brief.</s>\n<|user|>\nDescribe: Blue Mug</s>\n<|assistant|>\n");
  EXPECT_EQ(render_chat_prompt(ChatFamily::kPlain, {"", "Hi"}),
            "### Instruction:\nHi\n\n### Response:\n");
  EXPECT_EQ(chat_stop_strings(ChatFamily::kLlama3), std::vector<std::string>{"<|eot_id|>"});
  EXPECT_EQ(chat_family_name(ChatFamily::kChatMl), "chatml");
}

// The golden strings are what transformers' apply_chat_template renders
// with each family's real template (scripts/render_chat_templates.py).
TEST(TokenizerChatFormat, ConversationsRenderAsTheRealTemplatesDo) {
  const std::vector<golden::Conversation> conversations = golden::conversations();
  int checked = 0;
  for (const golden::Rendering& r : golden::renderings()) {
    const auto c = std::find_if(conversations.begin(), conversations.end(), [&](const auto& c) {
      return std::string(c.name) == r.conversation;
    });
    ASSERT_NE(c, conversations.end()) << r.conversation;
    EXPECT_EQ(render_chat_prompt(r.family, c->turn), r.text)
        << chat_family_name(r.family) << ", " << r.conversation << " (template of "
        << r.template_source << ")";
    ++checked;
  }
  EXPECT_EQ(checked, 5 * static_cast<int>(conversations.size()));  // every templated family
}

TEST(TokenizerChatFormat, PlainFormatTakesTurnsAsInstructionAndResponse) {
  EXPECT_EQ(render_chat_prompt(ChatFamily::kPlain, follow_up()),
            "Be brief.\n\n"
            "### Instruction:\nWhat is Dune about?\n\n"
            "### Response:\nA desert planet.\n\n"
            "### Instruction:\nWho wrote it?\n\n### Response:\n");
}

// Llama-2's and Mistral's templates raise on anything but alternating user
// and assistant messages; the renderer writes each message in its place.
TEST(TokenizerChatFormat, MessagesOutOfTurnRenderInTheirPlace) {
  ChatTurn odd{.system = "Be brief.",
               .user = "Who wrote it?",
               .history = {{ChatRole::kAssistant, "Welcome!"},
                           {ChatRole::kUser, "Dune"},
                           {ChatRole::kUser, "the novel"}}};
  EXPECT_EQ(render_chat_prompt(ChatFamily::kLlama2, odd),
            " Welcome! </s><s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nDune [/INST]"
            "<s>[INST] the novel [/INST]<s>[INST] Who wrote it? [/INST]");
  EXPECT_EQ(render_chat_prompt(ChatFamily::kMistral, odd),
            "Welcome!</s>[INST] Be brief.\n\nDune [/INST][INST] the novel [/INST]"
            "[INST] Who wrote it? [/INST]");
  EXPECT_EQ(render_chat_prompt(ChatFamily::kZephyr, odd),
            "<|system|>\nBe brief.</s>\n<|assistant|>\nWelcome!</s>\n<|user|>\nDune</s>\n"
            "<|user|>\nthe novel</s>\n<|user|>\nWho wrote it?</s>\n<|assistant|>\n");
}

TEST(TokenizerChatFormat, MultiTurnPromptsTokenizeToSpecialIds) {
  const auto llama3 = shared_path("tokenizers/llama3");
  const auto mistral = shared_path("tokenizers/mistral-7b-v0.1");
  if (!std::filesystem::exists(llama3 / "tokenizer.json") ||
      !std::filesystem::exists(mistral / "tokenizer.json"))
    GTEST_SKIP() << "shared test data absent: " << llama3 << ", " << mistral;
  // Llama-3: one <|eot_id|> per message (system, two earlier, the current).
  const auto l3 = load_tokenizer(llama3);
  const auto ids = l3->encode(render_chat_prompt(ChatFamily::kLlama3, follow_up()), true);
  EXPECT_EQ(count_id(ids, 128000), 1u);  // <|begin_of_text|>, from the tokenizer
  EXPECT_EQ(count_id(ids, 128009), 4u);  // <|eot_id|>
  // Llama-2 and Mistral: the answer's </s> (and Llama-2's next <s>) are the
  // special ids for a tokenizer.json model, never the text "</s>".
  const auto m = load_tokenizer(mistral);
  const auto l2 = m->encode(render_chat_prompt(ChatFamily::kLlama2, follow_up()), true);
  EXPECT_EQ(count_id(l2, 1), 2u);  // <s>: BOS, and before the second [INST]
  EXPECT_EQ(count_id(l2, 2), 1u);  // </s> after the answer
  const auto mi = m->encode(render_chat_prompt(ChatFamily::kMistral, follow_up()), true);
  EXPECT_EQ(count_id(mi, 1), 1u);
  EXPECT_EQ(count_id(mi, 2), 1u);
}

TEST(TokenizerChatFormat, RenderedPromptsTokenizeToSpecialIds) {
  const auto llama3 = shared_path("tokenizers/llama3");
  const auto qwen3 = shared_path("tokenizers/qwen3");
  if (!std::filesystem::exists(llama3 / "tokenizer.json") ||
      !std::filesystem::exists(qwen3 / "tokenizer.json"))
    GTEST_SKIP() << "shared test data absent: " << llama3 << ", " << qwen3;
  const ChatTurn turn{"Be brief.", "Describe: Blue Mug"};
  const auto l3 = load_tokenizer(llama3);
  const auto ids = l3->encode(render_chat_prompt(detect_chat_family(llama3), turn), true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], 128000);         // <|begin_of_text|>
  EXPECT_EQ(ids[1], 128006);         // <|start_header_id|>
  EXPECT_TRUE(has_id(ids, 128009));  // <|eot_id|>
  const auto qw = load_tokenizer(qwen3);
  const auto qids = qw->encode(render_chat_prompt(detect_chat_family(qwen3), turn), true);
  ASSERT_FALSE(qids.empty());
  EXPECT_EQ(qids[0], 151644);         // <|im_start|>, no BOS in Qwen
  EXPECT_TRUE(has_id(qids, 151645));  // <|im_end|>
  EXPECT_TRUE(has_id(qw->eos_ids(), 151645));
}

}  // namespace
}  // namespace vitrine::models
