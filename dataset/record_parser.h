// Parses one raw trn.json line into its uid, title and content, or says
// precisely why the line is not a usable record.
//
// Lines are parsed in place with simdjson's On Demand API (the caller
// guarantees LineReader::kPadding readable bytes after the line), field by
// field: the first "title", "content" and "uid" are read; everything else
// (target_ind / target_rel, the extreme-classification labels vitrine does not
// use, any other key, and repeated keys) is validated as JSON but not
// converted, so a number of any size there is fine. The first key that comes
// twice is reported (RawRecord::duplicate_key); its first value is the one
// used. The strings returned are views into the parser's buffers, valid until
// the next parse() call. Not a goal: accepting JSON5, comments, or several
// records per line.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace vitrine::dataset {

// Why a line was set aside. The names are the report's keys.
enum class Malformed : uint8_t {
  kNone = 0,
  kBlank,             // empty or only whitespace
  kNulByte,           // a raw NUL byte in the line
  kInvalidUtf8,       // bytes that are not UTF-8 (when repair is off)
  kBadJson,           // not valid JSON: truncated, unbalanced, bad escape...
  kNotObject,         // valid JSON but not an object
  kMissingTitle,      // no "title" key
  kTitleNotString,    // "title" is a number, null, array...
  kMissingContent,    // no "content" key
  kContentNotString,  // "content" is not a string
};
inline constexpr int kNumMalformed = 10;
std::string_view malformed_name(Malformed reason);

struct RawRecord {
  std::string_view uid;            // empty when the line has no string uid
  std::string_view title;          // decoded JSON string, valid UTF-8
  std::string_view content;        // decoded JSON string, valid UTF-8
  bool utf8_repaired = false;      // the line had invalid bytes replaced with U+FFFD
  std::string_view duplicate_key;  // the first key seen twice (its first value is used); empty
                                   // when every key is unique
};

class RecordParser {
 public:
  // repair_utf8: replace ill-formed UTF-8 with U+FFFD and parse, rather than
  // rejecting the line as kInvalidUtf8.
  explicit RecordParser(bool repair_utf8);
  ~RecordParser();
  RecordParser(const RecordParser&) = delete;
  RecordParser& operator=(const RecordParser&) = delete;

  // Parses `line` (no trailing '\n'); `line.data() + line.size()` must be
  // followed by LineReader::kPadding readable bytes. On failure returns the
  // reason and sets detail() to a short explanation.
  Malformed parse(std::string_view line, RawRecord& record);
  const std::string& detail() const { return detail_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool repair_utf8_;
  std::string detail_;
};

}  // namespace vitrine::dataset
