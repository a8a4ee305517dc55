// The config binder reads numbers strictly: whole numbers for integer
// fields, within the field's range, and finite numbers for the others.
#include "common/config_binder.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace vitrine {
namespace {

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
