// Chat-family detection from tokenizer_config.json and prompt rendering,
// checked down to the special-token ids of the shared tokenizers.
#include <gtest/gtest.h>

#include <algorithm>

#include "models/tokenizer/chat_format.h"
#include "models/tokenizer/tokenizer.h"
#include "tests/support/temp_dir.h"

namespace vitrine::models {
namespace {

using testing::shared_path;

bool has_id(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
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
