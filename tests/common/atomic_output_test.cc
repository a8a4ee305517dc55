#include "common/atomic_output.h"

#include <gtest/gtest.h>

#include "tests/support/temp_dir.h"

namespace vitrine {
namespace {

using testing::read_file;
using testing::TempDir;
using testing::write_file;

TEST(AtomicFile, CommitReplacesTheTargetInOneStep) {
  TempDir dir;
  const auto target = dir / "a.txt";
  write_file(target, "old");
  {
    AtomicFile f(target);
    f.write("new ");
    EXPECT_EQ(read_file(target), "old");  // not visible before commit
    f.write("content");
    f.commit();
  }
  EXPECT_EQ(read_file(target), "new content");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}),
            1);  // no temporary left
}

TEST(AtomicFile, AbandonedWriteLeavesTargetAndNoTemporary) {
  TempDir dir;
  const auto target = dir / "a.txt";
  write_file(target, "good");
  {
    AtomicFile f(target);
    f.write("half");
  }
  EXPECT_EQ(read_file(target), "good");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(AtomicFile, UnwritableDirectoryNamesThePath) {
  try {
    AtomicFile f("/nonexistent-dir/x.txt");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir"), std::string::npos) << e.what();
  }
}

TEST(StagingDir, CommitCreatesTarget) {
  TempDir dir;
  const auto target = dir / "ds";
  {
    StagingDir staging(target);
    write_file(staging.path() / "f", "1");
    EXPECT_FALSE(std::filesystem::exists(target));
    staging.commit();
  }
  EXPECT_EQ(read_file(target / "f"), "1");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(StagingDir, CommitSwapsOutThePreviousDirectory) {
  TempDir dir;
  const auto target = dir / "ds";
  std::filesystem::create_directory(target);
  write_file(target / "old", "x");
  {
    StagingDir staging(target);
    write_file(staging.path() / "new", "y");
    staging.commit();
  }
  EXPECT_FALSE(std::filesystem::exists(target / "old"));
  EXPECT_EQ(read_file(target / "new"), "y");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(StagingDir, FailureNeverTouchesAGoodDirectory) {
  TempDir dir;
  const auto target = dir / "ds";
  std::filesystem::create_directory(target);
  write_file(target / "good", "keep");
  {
    StagingDir staging(target);
    write_file(staging.path() / "partial", "half");
    // no commit: as when a run throws
  }
  EXPECT_EQ(read_file(target / "good"), "keep");
  EXPECT_FALSE(std::filesystem::exists(target / "partial"));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(StagingDir, RemovesStagingOfDeadProcesses) {
  TempDir dir;
  const auto stale = dir / ".ds.tmp-999999999";  // no such pid
  std::filesystem::create_directory(stale);
  write_file(stale / "junk", "z");
  StagingDir staging(dir / "ds");
  EXPECT_FALSE(std::filesystem::exists(stale));
}

}  // namespace
}  // namespace vitrine
