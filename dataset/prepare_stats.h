// The counts, distributions and examples behind stats.json and report.md.
//
// Workers fill a PrepareCounters per block; the consumer merges them in file
// order, so the "first examples" are the first in the file whatever the
// thread count, and the report is byte-identical between runs.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "dataset/length_histogram.h"
#include "dataset/record_parser.h"

namespace vitrine::dataset {

// Transforming rules: the first six are TextCleaner's CleanRule bits, in order;
// the others are about a whole record and count records (in the titles column).
enum class Transform : uint8_t {
  kEntities,
  kTags,
  kBoilerplate,
  kControlChars,
  kWhitespace,
  kTruncated,
  kUtf8Repaired,
  kUidDerived,
  kDuplicateKeys,  // a key repeated in the record's object: its first value is used
};
inline constexpr int kNumTransforms = 9;
std::string_view transform_name(Transform t);

// Dropping rules, in the order they are applied.
enum class Drop : uint8_t {
  kEmptyTitle,
  kShortTitle,
  kLongTitle,
  kEmptyContent,
  kShortContent,
  kContentIsTitle,
  kDuplicate,
  kDuplicateUid,
};
inline constexpr int kNumDrops = 8;
std::string_view drop_name(Drop d);

struct Example {
  uint64_t line = 0;
  std::string field;   // "title", "content", "record" or the malformed reason
  std::string before;  // raw excerpt
  std::string after;   // cleaned excerpt, or a detail
};

struct PrepareCounters {
  uint64_t lines = 0;    // physical lines read
  uint64_t records = 0;  // lines that parsed into a record
  std::array<uint64_t, kNumMalformed> malformed{};
  std::array<uint64_t, kNumTransforms> title_transforms{};
  std::array<uint64_t, kNumTransforms> content_transforms{};
  std::array<uint64_t, kNumDrops> drops{};
  uint64_t raw_empty_content = 0;  // contents empty in the raw file
  uint64_t entities_decoded = 0;   // character references replaced, both fields
  LengthHistogram title_before;    // raw (JSON-decoded) non-empty titles, code points
  LengthHistogram content_before;  // raw non-empty contents, code points
  std::vector<Example> malformed_examples;
  std::array<std::vector<Example>, kNumTransforms> transform_examples;
  std::array<std::vector<Example>, kNumDrops> drop_examples;

  // Adds `other` (which comes later in the file) to this, keeping at most
  // `max_examples` examples per rule and `max_malformed` malformed lines.
  void merge(PrepareCounters&& other, size_t max_examples, size_t max_malformed);
  uint64_t malformed_total() const;
};

// An excerpt of `before` and `after` around their first difference, at most
// `width` code points each, with "…" marking cuts.
Example make_example(uint64_t line, std::string_view field, std::string_view before,
                     std::string_view after, size_t width = 160);

// A dropped record as an example: its title excerpt as "before", its
// description excerpt as "after".
Example make_record_example(uint64_t line, std::string_view title, std::string_view content);

// Renders report.md from stats.json's content.
std::string render_report(const nlohmann::ordered_json& stats);

}  // namespace vitrine::dataset
