// A fresh directory per test, removed afterwards; small file helpers; and
// where ../shared's inputs are.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>

namespace vitrine::testing {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("vitrine-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out << bytes;
}

// Every entry under `dir`, relative path -> bytes ("" for directories):
// a directory's whole state, to compare before and after, or with another.
inline std::map<std::string, std::string> directory_tree(const std::filesystem::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    out[std::filesystem::relative(e.path(), dir).string()] =
        e.is_regular_file() ? read_file(e.path()) : "";
  }
  return out;
}

inline std::filesystem::path shared_path(const std::string& rel) {
  return std::filesystem::path(VITRINE_SHARED_DIR) / rel;
}

// ../shared's sample catalogue and stories260K model: what the suites that
// prepare, train and serve start from. Nothing when ../shared is absent
// (those suites then skip).
struct SampleAndModel {
  std::filesystem::path sample, model;
};
inline std::optional<SampleAndModel> sample_and_model() {
  SampleAndModel s{shared_path("data/amazon_titles_sample.jsonl"),
                   shared_path("models/stories260K-hf")};
  if (!std::filesystem::exists(s.sample) || !std::filesystem::exists(s.model)) return std::nullopt;
  return s;
}

}  // namespace vitrine::testing
