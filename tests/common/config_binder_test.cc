// ConfigBinder: numbers bind only when they convert exactly (whole numbers
// in range for integer fields, finite numbers in range for the others), and
// errors keep their message whatever bytes the config held. Some inputs are
// the ones the config_binders fuzz target (tests/fuzz/) found.
#include "common/config_binder.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "tests/support/expect_error.h"

namespace vitrine {
namespace {

struct SmallKnobs {
  size_t max_chars = 5000;
  int32_t seed = 7;
  float share = 0.5f;
  bool flag = true;
};

void bind_small(const nlohmann::json& json, SmallKnobs& k) {
  ConfigBinder b(&json, "section");
  b.field("max_chars", k.max_chars)
      .field("seed", k.seed)
      .field("share", k.share)
      .field("flag", k.flag);
  b.finish_reading();
}

TEST(ConfigBinder, OutOfRangeNumberForAnIntegerIsAnError) {
  // Found by fuzzing: converting 1e30 to size_t was undefined behaviour.
  SmallKnobs k;
  testing::expect_error(
      [&] {
        bind_small({{"max_chars", 1e30}}, k);
      },
      {"config key 'section.max_chars'", "whole number", "1e+30"});
  testing::expect_error(
      [&] {
        bind_small({{"seed", int64_t{1} << 40}}, k);
      },
      {"config key 'section.seed'", "whole number from -2147483648"});
  testing::expect_error([&] { bind_small({{"seed", -1e300}}, k); }, {"section.seed"});
  testing::expect_error(
      [&] {
        bind_small({{"share", 1e300}}, k);
      },
      {"section.share", "number from"});
  EXPECT_EQ(k.max_chars, 5000u);
  EXPECT_EQ(k.seed, 7);
}

TEST(ConfigBinder, FractionForAnIntegerIsAnError) {
  SmallKnobs k;
  testing::expect_error(
      [&] {
        bind_small({{"max_chars", 2.5}}, k);
      },
      {"section.max_chars", "expected a whole number", "2.5"});
}

TEST(ConfigBinder, WholeNumbersBindWhateverTheirJsonType) {
  SmallKnobs k;
  bind_small({{"max_chars", 4e3}, {"seed", -3}, {"share", 0.25}}, k);
  EXPECT_EQ(k.max_chars, 4000u);
  EXPECT_EQ(k.seed, -3);
  EXPECT_FLOAT_EQ(k.share, 0.25f);
  bind_small({{"max_chars", uint64_t{18446744073709551615u}}}, k);
  EXPECT_EQ(k.max_chars, SIZE_MAX);
  EXPECT_THROW(bind_small({{"max_chars", -1}}, k), std::invalid_argument);
}

TEST(ConfigBinder, ErrorOnAValueThatIsNotUtf8KeepsItsMessage) {
  // Found by fuzzing: YAML strings are not checked for UTF-8, and printing
  // the value in the error threw nlohmann's type_error instead.
  SmallKnobs k;
  const nlohmann::json json = {{"flag", std::string("yes\xFF\xFE")}};
  testing::expect_error([&] { bind_small(json, k); },
                        {"config key 'section.flag'", "expected true or false", "yes\xEF\xBF\xBD"});
  EXPECT_THROW(bind_small(json, k), std::invalid_argument);
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

struct Knobs {
  int32_t steps = 1;
  int64_t big = 1;
  uint64_t seed = 1;
  double rate = 0.5;
};

void bind(ConfigBinder& b, Knobs& k) {
  b.field("steps", k.steps).field("big", k.big).field("seed", k.seed).field("rate", k.rate);
}

Knobs read(const nlohmann::json& json) {
  Knobs k;
  ConfigBinder b(&json, "run");
  bind(b, k);
  b.finish_reading();
  return k;
}

Knobs read_text(const std::string& json_text) {
  return read(nlohmann::json::parse(json_text));
}

// The error for `json`, which must name `key`.
std::string refusal(const nlohmann::json& json, const std::string& key) {
  try {
    read(json);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'run." + key + "'"), std::string::npos) << e.what();
    return e.what();
  }
  ADD_FAILURE() << json.dump() << " was accepted";
  return {};
}

TEST(ConfigBinder, WholeNumbersInRangeAndFiniteRatesAreRead) {
  const Knobs k =
      read_text(R"({"steps": 12, "big": 8.0, "seed": 18446744073709551615, "rate": 1})");
  EXPECT_EQ(k.steps, 12);
  EXPECT_EQ(k.big, 8);  // a float that is a whole number is one
  EXPECT_EQ(k.seed, UINT64_MAX);
  EXPECT_EQ(k.rate, 1.0);
  EXPECT_EQ(read_text(R"({"steps": -2147483648})").steps, INT32_MIN);
}

TEST(ConfigBinder, CutOrOverflowingNumbersAreRefusedNamingTheKey) {
  EXPECT_NE(refusal(nlohmann::json::parse(R"({"steps": 2.9})"), "steps").find("whole number"),
            std::string::npos);
  EXPECT_NE(refusal(nlohmann::json::parse(R"({"steps": 1e20})"), "steps").find("2147483647"),
            std::string::npos);
  refusal(nlohmann::json::parse(R"({"steps": 2147483648})"), "steps");
  refusal(nlohmann::json::parse(R"({"big": 9.3e18})"), "big");
  refusal(nlohmann::json::parse(R"({"big": 18446744073709551615})"), "big");
  refusal(nlohmann::json::parse(R"({"seed": -1})"), "seed");
  refusal(nlohmann::json::parse(R"({"seed": -1.0})"), "seed");
  refusal(nlohmann::json::parse(R"({"steps": "12"})"), "steps");
  // JSON text cannot spell infinity; YAML (.inf) and arithmetic can.
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_NE(refusal({{"rate", inf}}, "rate").find("finite"), std::string::npos);
  refusal({{"rate", -inf}}, "rate");
  refusal({{"rate", std::numeric_limits<double>::quiet_NaN()}}, "rate");
  refusal(nlohmann::json::parse(R"({"rate": true})"), "rate");
}

}  // namespace
}  // namespace vitrine
