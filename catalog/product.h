// One cleaned catalogue product, as prepare hands it to the catalogue and
// task writers. Views point into buffers owned by the caller and are valid
// only during the call that receives them.
#pragma once

#include <cstdint>
#include <string_view>

namespace vitrine::catalog {

enum class Split : uint8_t { kTrain = 0, kValidation = 1, kTest = 2 };
inline constexpr int kNumSplits = 3;

constexpr std::string_view split_name(Split split) {
  switch (split) {
    case Split::kTrain:
      return "train";
    case Split::kValidation:
      return "validation";
    case Split::kTest:
      return "test";
  }
  return "train";
}

struct Product {
  std::string_view uid;      // the record's uid, or a derived one (see docs/dataset.md)
  std::string_view title;    // cleaned title, valid UTF-8, single-spaced
  std::string_view content;  // cleaned description, valid UTF-8, single-spaced
  Split split = Split::kTrain;
  std::string_view lang = "unknown";  // ISO 639-1 code from detect_language, or "unknown"
  uint64_t line = 0;                  // 1-based line number in the input file
};

}  // namespace vitrine::catalog
