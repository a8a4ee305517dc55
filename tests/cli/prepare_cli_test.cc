// The `vitrine prepare` program as users run it: exit codes, messages, config.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "dataset/prepare.h"
#include "tests/support/gzip.h"
#include "tests/support/run_vitrine.h"
#include "tests/support/temp_dir.h"

namespace vitrine {
namespace {

namespace fs = std::filesystem;
using testing::CliRun;
using testing::read_file;
using testing::run_vitrine;
using testing::TempDir;
using testing::write_file;

const std::string kGood =
    R"({"uid": "B000000001", "title": "A Field Guide to Garden Birds", "content": "An illustrated guide to the birds that visit gardens, with notes on song and nesting."})"
    "\n";

TEST(PrepareCli, ShippedConfigHoldsExactlyTheDefaults) {
  TempDir dir;
  write_file(dir / "in.jsonl", kGood);
  const CliRun r = run_vitrine("prepare -q --input " + (dir / "in.jsonl").string() + " --out " +
                               (dir / "ds").string() + " --config " +
                               std::string(VITRINE_SOURCE_DIR) + "/configs/prepare.yaml");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto stats = nlohmann::ordered_json::parse(read_file(dir / "ds" / "stats.json"));
  EXPECT_EQ(stats["config"], dataset::config_to_json(dataset::PrepareConfig{}))
      << "configs/prepare.yaml and the defaults in the code disagree";
  EXPECT_NE(r.output.find("1 products kept"), std::string::npos) << r.output;
}

TEST(PrepareCli, UnknownConfigKeyFailsNamingIt) {
  TempDir dir;
  write_file(dir / "in.jsonl", kGood);
  write_file(dir / "bad.yaml", "filter:\n  min_content_char: 10\n");
  const CliRun r = run_vitrine("prepare -q --input " + (dir / "in.jsonl").string() + " --out " +
                               (dir / "ds").string() + " --config " + (dir / "bad.yaml").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("filter.min_content_char"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "ds"));
}

TEST(PrepareCli, YamlSyntaxErrorNamesTheLine) {
  TempDir dir;
  write_file(dir / "in.jsonl", kGood);
  write_file(dir / "bad.yaml", "filter:\n  min_content_chars: [10\n");
  const CliRun r = run_vitrine("prepare -q --input " + (dir / "in.jsonl").string() + " --out " +
                               (dir / "ds").string() + " --config " + (dir / "bad.yaml").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("bad.yaml"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("line"), std::string::npos) << r.output;
}

TEST(PrepareCli, MissingInputIsAUsageError) {
  TempDir dir;
  const CliRun r = run_vitrine("prepare --input " + (dir / "nope.json").string() + " --out " +
                               (dir / "ds").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("nope.json"), std::string::npos) << r.output;
}

TEST(PrepareCli, NothingKeptExitsNonZeroWithReasons) {
  TempDir dir;
  write_file(dir / "in.jsonl", "garbage\n{\"title\": 5}\n");
  const CliRun r = run_vitrine("prepare -q --input " + (dir / "in.jsonl").string() + " --out " +
                               (dir / "ds").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("nothing kept"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "ds"));
}

TEST(PrepareCli, PrintsTheReportWhenAsked) {
  TempDir dir;
  write_file(dir / "in.jsonl", kGood + "not json\n");
  const CliRun r = run_vitrine("prepare -q --print-report --input " + (dir / "in.jsonl").string() +
                               " --out " + (dir / "ds").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("# Dataset preparation report"), std::string::npos);
  EXPECT_NE(r.output.find("| bad_json | 1 |"), std::string::npos) << r.output;
}

TEST(PrepareCli, OutputHoldingTheInputFailsAtOnceAndDeletesNothing) {
  TempDir dir;
  fs::create_directories(dir / "d");
  write_file(dir / "d" / "trn.jsonl", kGood);
  const CliRun r = run_vitrine("prepare -q -i " + (dir / "d" / "trn.jsonl").string() + " -o " +
                               (dir / "d").string());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("contains the input"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(dir / "d" / "trn.jsonl"), kGood);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir / "d"), {}), 1);
}

TEST(PrepareCli, DotAsOutputFailsAtOnce) {
  TempDir dir;
  fs::create_directories(dir / "cwd");
  // Bad input: had the work been done first, the error would be "nothing kept".
  write_file(dir / "in.jsonl", "not json\n");
  const CliRun r = run_vitrine("prepare -q -i " + (dir / "in.jsonl").string() + " -o .",
                               "cd " + (dir / "cwd").string() + " &&");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("'.' ('" + (dir / "cwd").string() + "') is the current directory"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("nothing kept"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::is_empty(dir / "cwd"));
}

const std::string kSecond =
    R"({"uid": "B000000002", "title": "The Pond Book", "content": "Everything that lives in and around a garden pond, season by season, with photographs."})"
    "\n";

TEST(PrepareCli, StandardInputAsDashPlainOrGzip) {
  TempDir dir;
  write_file(dir / "in.jsonl", kGood + kSecond);
  write_file(dir / "in.jsonl.gz", testing::gzip(kGood + kSecond));
  // Redirected from a file (seekable), then through pipes (not).
  const CliRun redirected = run_vitrine("prepare -q -i - -o " + (dir / "a").string() + " < " +
                                        (dir / "in.jsonl").string());
  const CliRun piped = run_vitrine("prepare -q -i - -o " + (dir / "b").string(),
                                   "cat " + (dir / "in.jsonl").string() + " |");
  const CliRun piped_gzip = run_vitrine("prepare -q -i - -o " + (dir / "c").string(),
                                        "cat " + (dir / "in.jsonl.gz").string() + " |");
  for (const CliRun* r : {&redirected, &piped, &piped_gzip}) {
    EXPECT_EQ(r->exit_code, 0) << r->output;
    EXPECT_NE(r->output.find("2 products kept of 2 lines"), std::string::npos) << r->output;
  }
  const auto stats = nlohmann::json::parse(read_file(dir / "c" / "stats.json"));
  EXPECT_TRUE(stats["input"]["gzip"].get<bool>());
  EXPECT_EQ(stats["input"]["name"], "stdin");
}

TEST(PrepareCli, DevStdinFromAPipeKeepsTheFirstRecord) {
  TempDir dir;
  write_file(dir / "in.jsonl", kGood + kSecond);
  write_file(dir / "in.jsonl.gz", testing::gzip(kGood + kSecond));
  const CliRun plain = run_vitrine("prepare -q -i /dev/stdin -o " + (dir / "a").string(),
                                   "cat " + (dir / "in.jsonl").string() + " |");
  const CliRun gz = run_vitrine("prepare -q -i /dev/stdin -o " + (dir / "b").string(),
                                "cat " + (dir / "in.jsonl.gz").string() + " |");
  for (const CliRun* r : {&plain, &gz}) {
    EXPECT_EQ(r->exit_code, 0) << r->output;
    EXPECT_NE(r->output.find("2 products kept of 2 lines (0 malformed)"), std::string::npos)
        << r->output;
  }
}

TEST(PrepareCli, StandardInputRedirectedFromTheOutputIsRefused) {
  TempDir dir;
  fs::create_directories(dir / "d");
  write_file(dir / "d" / "in.jsonl", kGood + kSecond);
  const CliRun r = run_vitrine("prepare -q -i - -o " + (dir / "d").string() + " < " +
                               (dir / "d" / "in.jsonl").string());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("contains the input"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(dir / "d" / "in.jsonl"), kGood + kSecond);
}

}  // namespace
}  // namespace vitrine
