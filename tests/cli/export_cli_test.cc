// `vitrine export` as a user runs it: a merged export gives, through
// `vitrine logits`, the logits the base gives with the adapter; an unmerged
// one, with its OUT/adapter; bad options are usage errors naming the
// option and value; refusals exit 1 naming the paths and write nothing.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/run_vitrine.h"
#include "tests/support/temp_dir.h"

namespace vitrine {
namespace {

namespace fs = std::filesystem;
using testing::run_vitrine;

const fs::path& fixture() {
  static const fs::path dir = testing::shared_path("fixtures/hf-llama/mha-untied");
  return dir;
}

#define SKIP_WITHOUT_FIXTURE() \
  if (!fs::exists(fixture())) GTEST_SKIP() << fixture() << " not found (../shared/fixtures)"

// `vitrine logits` of `args` (model and adapter options): the last position's logits.
std::vector<double> logits_of(const std::string& args) {
  const auto [code, out] = run_vitrine("logits --ids 1,7,99,300,2,45 " + args);
  EXPECT_EQ(code, 0) << out;
  if (code != 0) return {};
  return nlohmann::json::parse(out)["logits"].get<std::vector<double>>();
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

TEST(ExportCli, ExportsGiveTheLogitsOfTheBaseWithTheAdapter) {
  SKIP_WITHOUT_FIXTURE();
  testing::TempDir tmp;
  const std::string base = fixture().string(), adapter = (fixture() / "adapter").string();
  const std::vector<double> want = logits_of(fmt::format("--model {} --adapter {}", base, adapter));
  const std::string merged = (tmp / "merged").string(), unmerged = (tmp / "unmerged").string();
  auto r = run_vitrine(fmt::format("export -q --model {} --adapter {} --out {} --merge --dtype f32",
                                   base, adapter, merged));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("14 adapter modules merged; float32"), std::string::npos) << r.output;
  EXPECT_LT(max_abs_diff(logits_of("--model " + merged), want), 1e-5);
  r = run_vitrine(
      fmt::format("export -q -m {} -a {} -o {} --max-shard-size 150KB", base, adapter, unmerged));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("model.safetensors.index.json, model-00001-of-0000"), std::string::npos)
      << r.output;
  EXPECT_EQ(
      max_abs_diff(logits_of(fmt::format("--model {} --adapter {}/adapter", unmerged, unmerged)),
                   want),
      0.0);
}

TEST(ExportCli, BadOptionsAndRefusalsNameWhatAndWhere) {
  SKIP_WITHOUT_FIXTURE();
  testing::TempDir tmp;
  const std::string inputs =
      fmt::format("--model {} --adapter {}", fixture().string(), (fixture() / "adapter").string());
  const std::string out = (tmp / "out").string();
  auto r = run_vitrine(fmt::format("export {} --out {} --dtype fp8", inputs, out));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--dtype: dtype 'fp8' is not one export writes"), std::string::npos)
      << r.output;
  r = run_vitrine(fmt::format("export {} --out {} --max-shard-size 2Gb", inputs, out));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--max-shard-size: size '2Gb'"), std::string::npos) << r.output;
  r = run_vitrine(fmt::format("export --model {} --out {}", fixture().string(), out));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--adapter"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp / "out"));
  const std::string inside = (fixture() / "exported").string();
  r = run_vitrine(fmt::format("export {} --out {} --merge", inputs, inside));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  for (const std::string& part :
       {fmt::format("vitrine export: error: output directory '{}'", inside),
        fmt::format("is inside the base model '{}'", fixture().string())}) {
    EXPECT_NE(r.output.find(part), std::string::npos) << r.output << "\nmissing: " << part;
  }
  EXPECT_FALSE(fs::exists(inside));
}

}  // namespace
}  // namespace vitrine
