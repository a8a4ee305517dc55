// Parses and cleans one block of raw lines: the per-record half of `prepare`.
//
// A worker thread owns one BlockCleaner and turns each LineBlock into a Batch:
// the records that survived the per-record rules (parse, clean, length and
// emptiness filters), their text in one arena, and the counters and examples
// of every rule that fired. What needs the whole file (de-duplication, the
// catalogue, task files) is the consumer's, in prepare.cc. Not a goal:
// sharing state between blocks, so blocks can be cleaned in any order.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "catalog/catalog.h"
#include "common/stable_hash.h"
#include "dataset/line_reader.h"
#include "dataset/prepare.h"
#include "dataset/prepare_stats.h"
#include "dataset/record_parser.h"
#include "dataset/text_cleaner.h"

namespace vitrine::dataset {

// A record that survived the per-record rules, with its text in the batch arena.
struct CleanedRecord {
  uint64_t line = 0;
  uint32_t uid_off = 0, uid_len = 0;
  uint32_t title_off = 0, title_len = 0;
  uint32_t content_off = 0, content_len = 0;
  uint32_t title_chars = 0, content_chars = 0;
  Hash128 pair_hash, uid_hash, title_hash, content_hash;
  catalog::Split split = catalog::Split::kTrain;
  std::string_view lang;
};

// One block's worth of cleaned records, handed back in file order.
struct Batch {
  uint64_t sequence = 0;
  std::string arena;
  std::vector<CleanedRecord> records;
  PrepareCounters counters;
  double cpu_seconds = 0;
};

class BlockCleaner {
 public:
  explicit BlockCleaner(const PrepareConfig& config);

  // Parses and cleans every line of `block` into `batch` (which may hold
  // buffers of an earlier block, already cleared).
  void run(const LineBlock& block, Batch& batch);

 private:
  bool want_example(const std::vector<Example>& v) const {
    return v.size() < config_.examples_per_rule;
  }
  void process_line(std::string_view line, uint64_t line_no, Batch& batch);
  void count_malformed(Malformed why, std::string_view line, uint64_t line_no, PrepareCounters& c);
  void count_record(const RawRecord& raw, uint64_t line_no, PrepareCounters& c);
  void count_duplicate_key(std::string_view line, std::string_view key, uint64_t line_no,
                           PrepareCounters& c);
  // The first dropping rule that applies to the cleaned title_ / content_.
  std::optional<Drop> first_drop(size_t title_chars, size_t content_chars) const;
  void store(const RawRecord& raw, uint64_t line_no, size_t title_chars, size_t content_chars,
             Batch& batch);
  void clean_field(std::string_view raw, bool is_content, uint64_t line_no, std::string& out,
                   std::array<uint64_t, kNumTransforms>& counts, PrepareCounters& c);

  const PrepareConfig& config_;
  RecordParser parser_;
  TextCleaner cleaner_;
  std::string title_, content_, lowered_, joined_;
};

}  // namespace vitrine::dataset
