// `vitrine logits` against the transformers reference logits.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "tests/support/run_vitrine.h"
#include "tests/support/temp_dir.h"

namespace vitrine {
namespace {

namespace fs = std::filesystem;
using testing::run_vitrine;

TEST(LogitsCli, PrintsTheReferenceLogitsWithAndWithoutAdapter) {
  const fs::path dir = testing::shared_path("fixtures/hf-llama/mha-untied");
  if (!fs::exists(dir))
    GTEST_SKIP() << dir << " not found (../shared/fixtures is not beside this checkout)";
  std::ifstream in(dir / "expected.json");
  const auto expected = nlohmann::json::parse(in);
  const auto& seq = expected["sequences"][1];
  std::string ids;
  for (const auto& id : seq["ids"])
    ids += fmt::format("{}{}", ids.empty() ? "" : ",", id.get<int64_t>());
  for (const bool with_adapter : {false, true}) {
    const std::string adapter =
        with_adapter ? fmt::format(" --adapter {}", (dir / "adapter").string()) : "";
    const auto [code, out] =
        run_vitrine(fmt::format("logits --model {} --ids {}{}", dir.string(), ids, adapter));
    ASSERT_EQ(code, 0) << out;
    const auto j = nlohmann::json::parse(out);
    const auto& want = with_adapter ? expected["adapter"]["sequences"][1]["logits"] : seq["logits"];
    ASSERT_EQ(j["logits"].size(), want.size());
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      worst = std::max(worst, std::abs(j["logits"][i].get<double>() - want[i].get<double>()));
    }
    EXPECT_LT(worst, 1e-4) << (with_adapter ? "with adapter" : "base");
  }
}

// A bf16 base (the fixture's float32 weights rounded) on the exact path and
// the served fast path, and an int8 base: close to the float32 logits; a
// format it does not know is a usage error.
TEST(LogitsCli, Bf16OnBothPathsAndInt8LandNearFloat32) {
  const fs::path dir = testing::shared_path("fixtures/hf-llama/mha-untied");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  const std::string base = "logits --model " + dir.string() + " --ids 1,5,9,12,40";
  auto logits = [&](const std::string& flags) {
    const testing::CliRun r = run_vitrine(base + flags);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return nlohmann::json::parse(r.output)["logits"].get<std::vector<double>>();
  };
  const std::vector<double> f32 = logits(" --base-dtype f32");
  const std::vector<double> exact = logits(" --base-dtype bf16 --bf16-path exact");
  const std::vector<double> fast = logits(" --base-dtype bf16");
  ASSERT_EQ(exact.size(), f32.size());
  ASSERT_EQ(fast.size(), f32.size());
  double range = 0, exact_error = 0, fast_error = 0;
  for (size_t i = 0; i < f32.size(); ++i) {
    range = std::max(range, std::abs(f32[i]));
    exact_error = std::max(exact_error, std::abs(exact[i] - f32[i]));
    fast_error = std::max(fast_error, std::abs(fast[i] - f32[i]));
  }
  EXPECT_GT(exact_error, 0.0) << "the weights were rounded to bf16";
  EXPECT_LT(exact_error, 0.05 * range);
  EXPECT_LT(fast_error, 0.05 * range);
  EXPECT_NE(exact, fast);
  EXPECT_EQ(run_vitrine(base + " --base-dtype fp8").exit_code, 2);
  // --weights is the same option; int8 (a scale per output row) lands near
  // float32 too, further than bf16.
  const std::vector<double> int8 = logits(" --weights int8");
  ASSERT_EQ(int8.size(), f32.size());
  double int8_error = 0;
  for (size_t i = 0; i < f32.size(); ++i)
    int8_error = std::max(int8_error, std::abs(int8[i] - f32[i]));
  EXPECT_GT(int8_error, exact_error);
  EXPECT_LT(int8_error, 0.05 * range);
  EXPECT_EQ(logits(" --weights bf16"), fast);
  EXPECT_EQ(run_vitrine(base + " --weights fp8").exit_code, 2);
}

TEST(LogitsCli, BadIdsAreClearErrors) {
  const fs::path dir = testing::shared_path("fixtures/hf-llama/mha-untied");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  testing::CliRun r = run_vitrine("logits --model " + dir.string() + " --ids 1,x,3");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("'x' is not an integer"), std::string::npos) << r.output;
  r = run_vitrine("logits --model " + dir.string() + " --ids 1,99999");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("outside the vocabulary"), std::string::npos) << r.output;
}

TEST(LogitsCli, DeviceIsAnOption) {
  const fs::path dir = testing::shared_path("fixtures/hf-llama/mha-untied");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  const std::string base = "logits --model " + dir.string() + " --ids 1,2,3";
  const testing::CliRun cpu = run_vitrine(base + " --device cpu");
  const testing::CliRun implicit = run_vitrine(base);
  ASSERT_EQ(cpu.exit_code, 0) << cpu.output;
  EXPECT_EQ(cpu.output, implicit.output);
  const testing::CliRun bad = run_vitrine(base + " --device quantum");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("'quantum' is not a device name"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace vitrine

namespace vitrine {
namespace {

TEST(GenerateCli, StoriesGreedyTextIsTheReference) {
  const std::filesystem::path dir = testing::shared_path("models/stories260K-hf");
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " not found";
  std::ifstream in(dir / "reference.json");
  const auto reference = nlohmann::json::parse(in)["sequences"][0];
  const auto [code, out] = run_vitrine(
      fmt::format("generate --model {} --prompt 'Once upon a time' -n 30", dir.string()));
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(out, reference["greedy_text"].get<std::string>() + "\n");
}

}  // namespace
}  // namespace vitrine

namespace vitrine {
namespace {

TEST(InfoCli, ModelCommandsRunWithThePassiveWaitPolicy) {
  // Unset at start: the program restarts itself with PASSIVE in force.
  testing::CliRun r = testing::run_vitrine("info", "env -u OMP_WAIT_POLICY");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["omp_wait_policy"], "PASSIVE");
  EXPECT_GE(j["threads"].get<int>(), 1);
  EXPECT_TRUE(j.contains("avx2") && j.contains("cuda") && j.contains("transparent_huge_pages"));
  // A policy the user chose is kept.
  r = testing::run_vitrine("info", "env OMP_WAIT_POLICY=ACTIVE");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(r.output)["omp_wait_policy"], "ACTIVE");
}

}  // namespace
}  // namespace vitrine
