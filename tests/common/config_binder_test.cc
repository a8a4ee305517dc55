// ConfigBinder: numbers bind only when they convert exactly, and errors keep
// their message whatever bytes the config held. The inputs are the ones the
// config_binders fuzz target (tests/fuzz/) found.
#include "common/config_binder.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/expect_error.h"

namespace vitrine {
namespace {

struct Knobs {
  size_t max_chars = 5000;
  int32_t seed = 7;
  float share = 0.5f;
  bool flag = true;
};

void bind(const nlohmann::json& json, Knobs& k) {
  ConfigBinder b(&json, "section");
  b.field("max_chars", k.max_chars)
      .field("seed", k.seed)
      .field("share", k.share)
      .field("flag", k.flag);
  b.finish_reading();
}

TEST(ConfigBinder, OutOfRangeNumberForAnIntegerIsAnError) {
  // Found by fuzzing: converting 1e30 to size_t was undefined behaviour.
  Knobs k;
  testing::expect_error(
      [&] {
        bind({{"max_chars", 1e30}}, k);
      },
      {"config key 'section.max_chars'", "whole number", "1e+30"});
  testing::expect_error(
      [&] {
        bind({{"seed", int64_t{1} << 40}}, k);
      },
      {"config key 'section.seed'", "whole number from -2147483648"});
  testing::expect_error([&] { bind({{"seed", -1e300}}, k); }, {"section.seed"});
  testing::expect_error([&] { bind({{"share", 1e300}}, k); }, {"section.share", "number from"});
  EXPECT_EQ(k.max_chars, 5000u);
  EXPECT_EQ(k.seed, 7);
}

TEST(ConfigBinder, FractionForAnIntegerIsAnError) {
  Knobs k;
  testing::expect_error(
      [&] {
        bind({{"max_chars", 2.5}}, k);
      },
      {"section.max_chars", "expected a whole number", "2.5"});
}

TEST(ConfigBinder, WholeNumbersBindWhateverTheirJsonType) {
  Knobs k;
  bind({{"max_chars", 4e3}, {"seed", -3}, {"share", 0.25}}, k);
  EXPECT_EQ(k.max_chars, 4000u);
  EXPECT_EQ(k.seed, -3);
  EXPECT_FLOAT_EQ(k.share, 0.25f);
  bind({{"max_chars", uint64_t{18446744073709551615u}}}, k);
  EXPECT_EQ(k.max_chars, SIZE_MAX);
  EXPECT_THROW(bind({{"max_chars", -1}}, k), std::invalid_argument);
}

TEST(ConfigBinder, ErrorOnAValueThatIsNotUtf8KeepsItsMessage) {
  // Found by fuzzing: YAML strings are not checked for UTF-8, and printing
  // the value in the error threw nlohmann's type_error instead.
  Knobs k;
  const nlohmann::json json = {{"flag", std::string("yes\xFF\xFE")}};
  testing::expect_error([&] { bind(json, k); },
                        {"config key 'section.flag'", "expected true or false", "yes\xEF\xBF\xBD"});
  EXPECT_THROW(bind(json, k), std::invalid_argument);
}

TEST(ConfigBinder, TextThatIsNotUtf8IsAnError) {
  // Found by fuzzing: a YAML string with invalid UTF-8 bound to a string
  // field, and recording the config (config_to_json(...).dump()) threw.
  std::string name = "kept";
  std::vector<std::string> names;
  const nlohmann::json json = {{"name", "a\xFF"}, {"names", {"ok", "b\xC3"}}};
  ConfigBinder b(&json, "section");
  testing::expect_error([&] { b.field("name", name); },
                        {"config key 'section.name'", "expected UTF-8 text", "a\xEF\xBF\xBD"});
  testing::expect_error([&] { b.field("names", names); }, {"section.names", "expected UTF-8 text"});
  EXPECT_EQ(name, "kept");
  EXPECT_TRUE(names.empty());
}

}  // namespace
}  // namespace vitrine
