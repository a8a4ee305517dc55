// A named pipe fed by a writer thread: input that cannot be seek()ed or
// stat()ed for its size, as `cat trn.json | vitrine prepare -i -` gives.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

namespace vitrine::testing {

class FifoWriter {
 public:
  // Makes the FIFO `path` and writes `bytes` into it, in small pieces, once
  // a reader opens it. Gives up after 30 s without a reader.
  FifoWriter(std::filesystem::path path, std::string bytes)
      : path_(std::move(path)), bytes_(std::move(bytes)) {
    if (::mkfifo(path_.c_str(), 0600) != 0) throw std::runtime_error("mkfifo failed");
    thread_ = std::thread([this] { write_all(); });
  }
  ~FifoWriter() { thread_.join(); }
  FifoWriter(const FifoWriter&) = delete;
  FifoWriter& operator=(const FifoWriter&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  void write_all() {
    // Non-blocking open fails with ENXIO until a reader is there.
    int fd = -1;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while ((fd = ::open(path_.c_str(), O_WRONLY | O_NONBLOCK)) < 0) {
      if (errno != ENXIO || std::chrono::steady_clock::now() > deadline) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    size_t at = 0;
    while (at < bytes_.size()) {
      // Odd-sized pieces, so reads see short counts.
      const size_t piece = std::min<size_t>(bytes_.size() - at, 1 + (at % 7919));
      const ssize_t n = ::write(fd, bytes_.data() + at, piece);
      if (n <= 0) break;
      at += static_cast<size_t>(n);
    }
    ::close(fd);
  }

  std::filesystem::path path_;
  std::string bytes_;
  std::thread thread_;
};

}  // namespace vitrine::testing
