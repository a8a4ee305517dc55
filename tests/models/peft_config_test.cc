// adapter_config.json parsing and writing (models/peft_config.h), torch-free.
// The huge and fractional numbers are the inputs the peft_config fuzz target
// (tests/fuzz/) found.
#include "models/peft_config.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "tests/support/expect_error.h"

namespace vitrine::models {
namespace {

const std::filesystem::path kPath = "dir/adapter_config.json";

TEST(PeftConfig, ParsesAndWritesPeftFields) {
  const auto c = parse_peft_config(
      R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["v_proj", "q_proj", "q_proj"],
          "use_rslora": true, "base_model_name_or_path": "base"})",
      kPath);
  EXPECT_EQ(c.r, 4);
  EXPECT_DOUBLE_EQ(c.scaling(), 8 / 2.0);
  const std::string text = peft_config_json(c);
  EXPECT_NE(text.find("\"lora_alpha\": 8,"), std::string::npos) << text;
  const auto again = parse_peft_config(text, kPath);
  EXPECT_EQ(again.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_TRUE(again.use_rslora);
  EXPECT_EQ(again.base_model_name_or_path, "base");
}

TEST(PeftConfig, RefusesWhatIsNotPlainLora) {
  testing::expect_error([] { parse_peft_config("{", kPath); },
                        {"adapter 'dir/adapter_config.json'", "not JSON"});
  testing::expect_error(
      [] {
        parse_peft_config(R"({"r": 8, "lora_alpha": 8, "target_modules": "q", "use_dora": true})",
                          kPath);
      },
      {"DoRA"});
  testing::expect_error(
      [] { parse_peft_config(R"({"r": 0, "lora_alpha": 8, "target_modules": "q"})", kPath); },
      {"r must be > 0"});
  testing::expect_error([] { parse_peft_config(R"([1, 2])", kPath); }, {"bad field"});
}

TEST(PeftConfig, HugeAlphaIsWrittenAsAFloat) {
  // Found by fuzzing: a whole alpha beyond int64 was cast to int64 (undefined).
  const auto c =
      parse_peft_config(R"({"r": 8, "lora_alpha": 1e300, "target_modules": "q"})", kPath);
  const auto again = parse_peft_config(peft_config_json(c), kPath);
  EXPECT_EQ(again.lora_alpha, 1e300);
}

TEST(PeftConfig, FloatRankMustBeAWholeNumberInRange) {
  // Found by fuzzing: r = 1e300 was converted to int64 (undefined); 2.5 was cut to 2.
  EXPECT_EQ(parse_peft_config(R"({"r": 8.0, "lora_alpha": 16, "target_modules": "q"})", kPath).r,
            8);
  for (const char* r : {"1e300", "-1e300", "2.5"}) {
    testing::expect_error(
        [&] {
          parse_peft_config(
              std::string(R"({"lora_alpha": 16, "target_modules": "q", "r": )") + r + "}", kPath);
        },
        {"adapter 'dir/adapter_config.json'", "r must be a whole number > 0"});
  }
}

}  // namespace
}  // namespace vitrine::models
