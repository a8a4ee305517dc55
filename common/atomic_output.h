// Artefacts written atomically: a crash never leaves half a file behind.
//
// AtomicFile writes to a hidden temporary sibling and renames it over the
// target on commit(). StagingDir builds a whole output directory under a
// temporary sibling name and swaps it in on commit(): an interrupted or
// failed run leaves the previous directory (if any) untouched, and a
// successful one replaces it in one rename. Destructors without commit()
// remove what they wrote. Not a goal: durability across power loss beyond
// fsync of files (directories are fsynced where Linux allows it).
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

namespace vitrine {

class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path target);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(std::string_view bytes);
  // Flushes, fsyncs and renames over the target. Throws on I/O errors.
  void commit();
  const std::filesystem::path& target() const { return target_; }
  uint64_t bytes_written() const { return bytes_; }

 private:
  std::filesystem::path target_;
  std::filesystem::path temp_;
  std::FILE* file_ = nullptr;
  uint64_t bytes_ = 0;
};

// Writes `bytes` to `target` atomically.
void write_file_atomic(const std::filesystem::path& target, std::string_view bytes);

class StagingDir {
 public:
  // Creates `<parent>/.<name>.tmp-<pid>` next to `target`. Stale staging
  // directories of dead processes for the same target are removed first.
  explicit StagingDir(std::filesystem::path target);
  ~StagingDir();
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;

  const std::filesystem::path& path() const { return staging_; }
  const std::filesystem::path& target() const { return target_; }
  // Puts the staging directory in place of the target (atomically exchanged
  // when the target exists) and removes the old one.
  void commit();

 private:
  std::filesystem::path target_;
  std::filesystem::path staging_;
  bool committed_ = false;
};

}  // namespace vitrine
