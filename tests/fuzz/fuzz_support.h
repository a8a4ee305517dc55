// Helpers shared by the libFuzzer targets in tests/fuzz/: a property check
// that aborts (so libFuzzer records the input), and a scratch file for APIs
// that read from a path.
//
// Each target catches only the exception types its API documents as its
// errors; anything else escapes and libFuzzer reports it as a crash.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace vitrine::fuzz {

// Aborts with `what` when `condition` is false: a broken property is a bug.
#define VITRINE_FUZZ_CHECK(condition, what)                                              \
  do {                                                                                   \
    if (!(condition)) {                                                                  \
      std::fprintf(stderr, "property violated: %s (%s:%d)\n", what, __FILE__, __LINE__); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

// A file in a per-process scratch folder (tmpfs when TMPDIR points there),
// rewritten with each input; `name` is its file name (APIs look at it).
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& name) {
    dir_ = std::filesystem::temp_directory_path() / ("vitrine-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    path_ = dir_ / name;
  }
  ~ScratchFile() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  const std::filesystem::path& write(std::string_view bytes) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path_;
  }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::filesystem::path path_;
};

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace vitrine::fuzz
