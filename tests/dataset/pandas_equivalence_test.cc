// With its rules set to the peer's, prepare keeps exactly the records, with
// exactly the text, that the pandas pipeline of the published solutions
// (../shared/bench/pandas_clean.py: html.unescape, tag and \s regexes, empty
// and duplicate filters) writes for the real sample. This checks the HTML5
// decoding and the Unicode whitespace rules end to end against Python.
#include <gtest/gtest.h>

#include <fstream>

#include "dataset/prepare.h"
#include "tests/support/temp_dir.h"

namespace vitrine::dataset {
namespace {

namespace fs = std::filesystem;
using testing::shared_path;
using testing::TempDir;

std::vector<std::pair<std::string, std::string>> pairs_of(const fs::path& jsonl) {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream in(jsonl);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    out.emplace_back(j["title"], j["content"]);
  }
  return out;
}

TEST(PandasEquivalence, PeerRulesGiveThePeerOutputOnTheSample) {
  const fs::path sample = shared_path("data/amazon_titles_sample.jsonl");
  const fs::path peer = shared_path("bench/pandas_clean.py");
  if (!fs::exists(sample) || !fs::exists(peer))
    GTEST_SKIP() << "../shared/data or ../shared/bench not found";
  if (std::system("/usr/bin/python3 -c 'import pandas' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "Debian's python3-pandas is not installed (scripts/setup.sh installs it)";
  }
  TempDir dir;
  const std::string cmd = "/usr/bin/python3 " + peer.string() + " " + sample.string() + " --out " +
                          (dir / "pandas.jsonl").string() + " >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  PrepareConfig config;
  config.clean.remove_boilerplate = false;
  config.clean.remove_control_chars = false;
  config.clean.max_content_chars = 0;
  config.filter.min_title_chars = 1;
  config.filter.max_title_chars = 0;
  config.filter.min_content_chars = 1;
  config.filter.drop_content_equal_to_title = false;
  config.filter.drop_duplicate_uids = false;
  PrepareHooks hooks;
  hooks.progress = false;
  hooks.clean_only = true;
  run_prepare(sample, dir / "ds", config, hooks);

  const auto ours = pairs_of(dir / "ds" / "clean.jsonl");
  const auto theirs = pairs_of(dir / "pandas.jsonl");
  ASSERT_GT(theirs.size(), 800u);
  ASSERT_EQ(ours.size(), theirs.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_EQ(ours[i].first, theirs[i].first) << "title of record " << i;
    EXPECT_EQ(ours[i].second, theirs[i].second) << "content of record " << i;
  }
}

}  // namespace
}  // namespace vitrine::dataset
