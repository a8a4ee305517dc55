#include "common/atomic_output.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace vitrine {
namespace fs = std::filesystem;
namespace {

[[noreturn]] void throw_errno(const std::string& what, const fs::path& path) {
  throw std::runtime_error(fmt::format("{} '{}': {}", what, path.string(), std::strerror(errno)));
}

void fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

fs::path parent_of(const fs::path& p) {
  const fs::path parent = p.parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

}  // namespace

AtomicFile::AtomicFile(fs::path target) : target_(std::move(target)) {
  temp_ = parent_of(target_) / fmt::format(".{}.tmp-{}", target_.filename().string(), ::getpid());
  file_ = std::fopen(temp_.c_str(), "wb");
  if (file_ == nullptr) throw_errno("cannot create", temp_);
}

AtomicFile::~AtomicFile() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::error_code ignored;
    fs::remove(temp_, ignored);
  }
}

void AtomicFile::write(std::string_view bytes) {
  if (file_ == nullptr) throw std::logic_error("AtomicFile::write after commit");
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
    throw_errno("cannot write", temp_);
  }
  bytes_ += bytes.size();
}

void AtomicFile::commit() {
  if (file_ == nullptr) throw std::logic_error("AtomicFile::commit twice");
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) throw_errno("cannot flush", temp_);
  if (std::fclose(file_) != 0) {
    file_ = nullptr;
    throw_errno("cannot close", temp_);
  }
  file_ = nullptr;
  if (::rename(temp_.c_str(), target_.c_str()) != 0)
    throw_errno("cannot rename into place", target_);
  fsync_dir(parent_of(target_));
}

void write_file_atomic(const fs::path& target, std::string_view bytes) {
  AtomicFile file(target);
  file.write(bytes);
  file.commit();
}

StagingDir::StagingDir(fs::path target) : target_(std::move(target)) {
  const fs::path parent = parent_of(target_);
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec)
    throw std::runtime_error(fmt::format("cannot create '{}': {}", parent.string(), ec.message()));
  const std::string prefix = fmt::format(".{}.tmp-", target_.filename().string());
  // Remove staging directories left by runs that were killed.
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      fs::remove_all(entry.path(), ec);
    }
  }
  staging_ = parent / fmt::format("{}{}", prefix, ::getpid());
  fs::remove_all(staging_, ec);
  if (!fs::create_directory(staging_, ec) || ec) {
    throw std::runtime_error(
        fmt::format("cannot create '{}': {}", staging_.string(), ec.message()));
  }
}

StagingDir::~StagingDir() {
  if (!committed_) {
    std::error_code ignored;
    fs::remove_all(staging_, ignored);
  }
}

void StagingDir::commit() {
  if (committed_) throw std::logic_error("StagingDir::commit twice");
  fsync_dir(staging_);
  std::error_code ec;
  if (fs::exists(target_, ec)) {
    if (!fs::is_directory(target_, ec)) {
      throw std::runtime_error(fmt::format("'{}' exists and is not a directory", target_.string()));
    }
    // Exchange in one step: readers see the old or the new directory, never none.
    if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, target_.c_str(), RENAME_EXCHANGE) != 0) {
      throw_errno("cannot exchange with", target_);
    }
    committed_ = true;
    fs::remove_all(staging_, ec);  // now holds the previous contents
  } else {
    if (::rename(staging_.c_str(), target_.c_str()) != 0)
      throw_errno("cannot rename into place", target_);
    committed_ = true;
  }
  fsync_dir(parent_of(target_));
}

}  // namespace vitrine
