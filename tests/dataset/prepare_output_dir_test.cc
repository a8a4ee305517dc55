// prepare replaces its output directory as a whole: these tests check that it
// only ever replaces an empty directory or a dataset it wrote, never the
// input's folder, a parent of it or a foreign directory, however spelled.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "dataset/output_dir.h"
#include "dataset/prepare.h"
#include "tests/support/temp_dir.h"

namespace vitrine::dataset {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::TempDir;
using testing::write_file;

const std::string kRecords =
    R"({"uid": "B1", "title": "A Field Guide to Garden Birds", "content": "An illustrated guide to the birds that visit gardens, with notes on song and nesting."})"
    "\n"
    R"({"uid": "B2", "title": "The Pond Book", "content": "Everything that lives in and around a garden pond, season by season, with photographs."})"
    "\n";

PrepareConfig quiet_config() {
  PrepareConfig config;
  config.threads = 1;
  return config;
}

PrepareHooks quiet() {
  PrepareHooks hooks;
  hooks.progress = false;
  return hooks;
}

// The message of the runtime_error `f` throws, or "" when it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

// Every entry under `dir`, relative path -> bytes ("" for directories).
std::map<std::string, std::string> tree(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    out[fs::relative(e.path(), dir).string()] = e.is_regular_file() ? read_file(e.path()) : "";
  }
  return out;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(PrepareOutputDir, RefusesTheInputsFolderAndDeletesNothing) {
  TempDir dir;
  const fs::path d = dir / "d";
  fs::create_directories(d);
  write_file(d / "trn.jsonl", kRecords);
  const auto before = tree(d);
  const std::string error =
      error_of([&] { run_prepare(d / "trn.jsonl", d, quiet_config(), quiet()); });
  EXPECT_TRUE(contains(error, "contains the input")) << error;
  EXPECT_TRUE(contains(error, d.string())) << error;
  EXPECT_TRUE(contains(error, (d / "trn.jsonl").string())) << error;
  EXPECT_EQ(tree(d), before);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), {}), 1) << "staging left behind";
}

TEST(PrepareOutputDir, RefusesEveryParentOfTheInput) {
  TempDir dir;
  const fs::path input = dir / "a" / "b" / "trn.jsonl";
  fs::create_directories(input.parent_path());
  write_file(input, kRecords);
  for (const fs::path& out : {dir / "a", dir / "a" / "b", dir.path()}) {
    const std::string error = error_of([&] { run_prepare(input, out, quiet_config(), quiet()); });
    EXPECT_TRUE(contains(error, "contains the input")) << out << ": " << error;
  }
  EXPECT_EQ(read_file(input), kRecords);
}

TEST(PrepareOutputDir, SeesThroughDotDotRelativePathsAndSymlinks) {
  TempDir dir;
  const fs::path d = dir / "d";
  fs::create_directories(d / "sub");
  write_file(d / "trn.jsonl", kRecords);
  fs::create_directory_symlink(d, dir / "link");
  fs::create_symlink(d / "trn.jsonl", dir / "trn-link.jsonl");
  const fs::path relative_d = fs::relative(d, fs::current_path());
  const std::vector<std::pair<fs::path, fs::path>> spellings = {
      {d / "trn.jsonl", d / "sub" / ".."},          // ".." back to the folder
      {d / "trn.jsonl", d.string() + "/"},          // trailing slash
      {d / "trn.jsonl", relative_d},                // relative output
      {relative_d / "trn.jsonl", d},                // relative input
      {d / "trn.jsonl", dir / "link"},              // output through a symlink
      {dir / "link" / "trn.jsonl", d},              // input through a symlinked folder
      {dir / "trn-link.jsonl", d},                  // input is a symlink to a file in it
      {d / "sub" / ".." / "trn.jsonl", dir / "."},  // the parent, spelled with "."
  };
  for (const auto& [input, out] : spellings) {
    const std::string error = error_of([&] { run_prepare(input, out, quiet_config(), quiet()); });
    EXPECT_TRUE(contains(error, "contains the input")) << input << " -> " << out << ": " << error;
    ASSERT_EQ(read_file(d / "trn.jsonl"), kRecords) << input << " -> " << out;
  }
  // A symlink to the input inside the output would be deleted with it.
  fs::create_directories(dir / "e");
  fs::create_symlink(d / "trn.jsonl", dir / "e" / "trn.jsonl");
  const std::string error =
      error_of([&] { run_prepare(dir / "e" / "trn.jsonl", dir / "e", quiet_config(), quiet()); });
  EXPECT_TRUE(contains(error, "contains the input")) << error;
  EXPECT_TRUE(fs::is_symlink(dir / "e" / "trn.jsonl"));
}

TEST(PrepareOutputDir, RefusesANonEmptyForeignDirectory) {
  TempDir dir;
  write_file(dir / "in.jsonl", kRecords);
  fs::create_directories(dir / "photos" / "2023");
  write_file(dir / "photos" / "notes.txt", "mine");
  const auto before = tree(dir / "photos");
  const std::string error =
      error_of([&] { run_prepare(dir / "in.jsonl", dir / "photos", quiet_config(), quiet()); });
  EXPECT_TRUE(contains(error, "not a dataset written by vitrine prepare")) << error;
  EXPECT_TRUE(contains(error, (dir / "photos").string())) << error;
  EXPECT_TRUE(contains(error, "notes.txt")) << error;
  EXPECT_EQ(tree(dir / "photos"), before);
}

TEST(PrepareOutputDir, RefusesAFileAsOutputBeforeAnyWork) {
  TempDir dir;
  write_file(dir / "in.jsonl", "not json\n");  // would fail as "nothing kept" after the work
  write_file(dir / "out", "a file");
  const std::string error =
      error_of([&] { run_prepare(dir / "in.jsonl", dir / "out", quiet_config(), quiet()); });
  EXPECT_TRUE(contains(error, "not a directory")) << error;
  EXPECT_EQ(read_file(dir / "out"), "a file");
}

TEST(PrepareOutputDir, RefusesTheCurrentDirectoryAndItsParentsBeforeAnyWork) {
  TempDir dir;
  write_file(dir / "in.jsonl", "not json\n");  // would fail as "nothing kept" after the work
  fs::create_directories(dir / "cwd");
  const fs::path saved = fs::current_path();
  fs::current_path(dir / "cwd");
  const std::string dot =
      error_of([&] { run_prepare(dir / "in.jsonl", ".", quiet_config(), quiet()); });
  const std::string dotdot =
      error_of([&] { run_prepare(dir / "in.jsonl", "..", quiet_config(), quiet()); });
  fs::current_path(saved);
  EXPECT_TRUE(contains(dot, "current directory")) << dot;
  EXPECT_TRUE(contains(dotdot, "current directory")) << dotdot;
  EXPECT_TRUE(fs::is_empty(dir / "cwd"));
}

TEST(PrepareOutputDir, FillsAnEmptyDirectoryAndMarksTheDataset) {
  TempDir dir;
  write_file(dir / "in.jsonl", kRecords);
  fs::create_directories(dir / "ds");
  run_prepare(dir / "in.jsonl", dir / "ds", quiet_config(), quiet());
  EXPECT_TRUE(fs::exists(dir / "ds" / "catalog.sqlite"));
  EXPECT_TRUE(fs::is_regular_file(dir / "ds" / std::string(kDatasetMarker)));
  // The marker is not an artefact: stats.json's file list is unchanged.
  const auto stats = nlohmann::json::parse(read_file(dir / "ds" / "stats.json"));
  EXPECT_FALSE(stats["files"].contains(std::string(kDatasetMarker)));
}

TEST(PrepareOutputDir, ReplacesAPreviousDatasetHoweverSpelled) {
  TempDir dir;
  write_file(dir / "in.jsonl", kRecords);
  run_prepare(dir / "in.jsonl", dir / "ds", quiet_config(), quiet());
  const auto first = tree(dir / "ds");
  run_prepare(dir / "in.jsonl", (dir / "ds").string() + "/", quiet_config(), quiet());
  fs::create_directory_symlink(dir / "ds", dir / "ds-link");
  run_prepare(dir / "in.jsonl", dir / "ds-link", quiet_config(), quiet());
  EXPECT_TRUE(fs::is_symlink(dir / "ds-link")) << "the link was replaced, not its target";
  EXPECT_EQ(tree(dir / "ds"), first);
  for (const auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos)
        << "staging left behind: " << e.path();
  }
}

TEST(PrepareOutputDir, ReplacesDatasetsOfVersionsWithoutTheMarker) {
  TempDir dir;
  write_file(dir / "in.jsonl", kRecords);
  run_prepare(dir / "in.jsonl", dir / "ds", quiet_config(), quiet());
  fs::remove(dir / "ds" / std::string(kDatasetMarker));
  run_prepare(dir / "in.jsonl", dir / "ds", quiet_config(), quiet());
  EXPECT_TRUE(fs::exists(dir / "ds" / std::string(kDatasetMarker)));
  // --clean-only datasets too: stats.json beside clean.jsonl.
  PrepareHooks clean_only = quiet();
  clean_only.clean_only = true;
  run_prepare(dir / "in.jsonl", dir / "clean", quiet_config(), clean_only);
  fs::remove(dir / "clean" / std::string(kDatasetMarker));
  run_prepare(dir / "in.jsonl", dir / "clean", quiet_config(), clean_only);
  EXPECT_TRUE(fs::exists(dir / "clean" / "clean.jsonl"));
  // Without the marker, the layout alone is not enough: stats.json must be vitrine's.
  fs::remove(dir / "ds" / std::string(kDatasetMarker));
  write_file(dir / "ds" / "stats.json", "{\"accuracy\": 0.9}\n");
  const std::string error =
      error_of([&] { run_prepare(dir / "in.jsonl", dir / "ds", quiet_config(), quiet()); });
  EXPECT_TRUE(contains(error, "not a dataset written by vitrine prepare")) << error;
}

TEST(PrepareOutputDir, RefusesADatasetThatAlsoHoldsOtherFiles) {
  TempDir dir;
  write_file(dir / "in.jsonl", kRecords);
  run_prepare(dir / "in.jsonl", dir / "ds", quiet_config(), quiet());
  write_file(dir / "ds" / "my-notes.md", "keep me");
  const std::string error =
      error_of([&] { run_prepare(dir / "in.jsonl", dir / "ds", quiet_config(), quiet()); });
  EXPECT_TRUE(contains(error, "my-notes.md")) << error;
  EXPECT_EQ(read_file(dir / "ds" / "my-notes.md"), "keep me");
}

}  // namespace
}  // namespace vitrine::dataset
