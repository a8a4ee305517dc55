#include "dataset/block_cleaner.h"

#include <fmt/format.h>
#include <time.h>

#include <cstring>
#include <optional>

#include "common/utf8.h"
#include "dataset/language.h"
#include "dataset/split.h"

namespace vitrine::dataset {
namespace {

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void ascii_lower_into(std::string_view s, std::string& out) {
  const size_t at = out.size();
  out.append(s);
  for (size_t i = at; i < out.size(); ++i) {
    const char c = out[i];
    if (c >= 'A' && c <= 'Z') out[i] = static_cast<char>(c + 32);
  }
}

// Text as the report shows it: valid UTF-8, control bytes as spaces.
std::string printable(std::string_view text) {
  std::string shown;
  utf8::repair(text, shown);
  for (char& ch : shown) {
    if (static_cast<unsigned char>(ch) < 0x20) ch = ' ';
  }
  return shown;
}

}  // namespace

BlockCleaner::BlockCleaner(const PrepareConfig& config)
    : config_(config), parser_(config.repair_utf8), cleaner_(config.clean) {}

void BlockCleaner::run(const LineBlock& block, Batch& batch) {
  const double cpu_start = thread_cpu_seconds();
  batch.sequence = block.sequence;
  const char* p = block.data();
  const char* end = p + block.size;
  uint64_t line_no = block.first_line;
  while (p < end) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    const char* line_end = nl != nullptr ? nl : end;
    process_line(std::string_view(p, static_cast<size_t>(line_end - p)), line_no, batch);
    ++line_no;
    p = line_end + 1;
  }
  batch.cpu_seconds = thread_cpu_seconds() - cpu_start;
}

void BlockCleaner::process_line(std::string_view line, uint64_t line_no, Batch& batch) {
  PrepareCounters& c = batch.counters;
  ++c.lines;
  RawRecord raw;
  const Malformed why = parser_.parse(line, raw);
  if (why != Malformed::kNone) {
    count_malformed(why, line, line_no, c);
    return;
  }
  count_record(raw, line_no, c);
  if (!raw.duplicate_key.empty()) count_duplicate_key(line, raw.duplicate_key, line_no, c);
  clean_field(raw.title, false, line_no, title_, c.title_transforms, c);
  clean_field(raw.content, true, line_no, content_, c.content_transforms, c);

  const size_t title_chars = utf8::count_code_points(title_);
  const size_t content_chars = utf8::count_code_points(content_);
  if (const std::optional<Drop> drop = first_drop(title_chars, content_chars)) {
    ++c.drops[static_cast<int>(*drop)];
    auto& ex = c.drop_examples[static_cast<int>(*drop)];
    if (want_example(ex)) ex.push_back(make_record_example(line_no, title_, content_));
    return;
  }
  store(raw, line_no, title_chars, content_chars, batch);
}

void BlockCleaner::count_malformed(Malformed why, std::string_view line, uint64_t line_no,
                                   PrepareCounters& c) {
  ++c.malformed[static_cast<int>(why)];
  if (c.malformed_examples.size() >= config_.malformed_examples) return;
  const std::string shown = printable(line.substr(0, 200));
  Example e = make_example(line_no, malformed_name(why), shown, shown, 100);
  e.after = parser_.detail();
  c.malformed_examples.push_back(std::move(e));
}

// The counts every parsed record adds, whatever happens to it next.
void BlockCleaner::count_record(const RawRecord& raw, uint64_t line_no, PrepareCounters& c) {
  ++c.records;
  if (raw.utf8_repaired) {
    ++c.title_transforms[static_cast<int>(Transform::kUtf8Repaired)];
    auto& ex = c.transform_examples[static_cast<int>(Transform::kUtf8Repaired)];
    if (want_example(ex)) ex.push_back(make_example(line_no, "record", raw.title, raw.title));
  }
  if (!raw.title.empty()) c.title_before.add(utf8::count_code_points(raw.title));
  if (raw.content.empty()) {
    ++c.raw_empty_content;
  } else {
    c.content_before.add(utf8::count_code_points(raw.content));
  }
}

// The record is kept with the first value of `key`; the example shows the
// line where the key comes again.
void BlockCleaner::count_duplicate_key(std::string_view line, std::string_view key,
                                       uint64_t line_no, PrepareCounters& c) {
  ++c.title_transforms[static_cast<int>(Transform::kDuplicateKeys)];
  auto& ex = c.transform_examples[static_cast<int>(Transform::kDuplicateKeys)];
  if (!want_example(ex)) return;
  const std::string shown = printable(line);
  const std::string shown_key = printable(key);
  // Found as spelled in the line; a key written with escapes is not, and
  // the excerpt then starts at the line's beginning.
  const std::string quoted = "\"" + shown_key + "\"";
  size_t again = shown.find(quoted);
  if (again != std::string::npos) again = shown.find(quoted, again + quoted.size());
  if (again == std::string::npos) again = 0;
  Example e = make_example(line_no, "record", shown, std::string_view(shown).substr(0, again));
  e.after = fmt::format("key \"{}\" appears again; its first value is used", shown_key);
  ex.push_back(std::move(e));
}

std::optional<Drop> BlockCleaner::first_drop(size_t title_chars, size_t content_chars) const {
  const FilterOptions& f = config_.filter;
  if (title_.empty()) return Drop::kEmptyTitle;
  if (title_chars < f.min_title_chars) return Drop::kShortTitle;
  if (f.max_title_chars > 0 && title_chars > f.max_title_chars) return Drop::kLongTitle;
  if (content_.empty()) return Drop::kEmptyContent;
  if (content_chars < f.min_content_chars) return Drop::kShortContent;
  if (f.drop_content_equal_to_title && content_ == title_) return Drop::kContentIsTitle;
  return std::nullopt;
}

// Appends the kept record's text to the arena with the hashes the consumer
// de-duplicates by.
void BlockCleaner::store(const RawRecord& raw, uint64_t line_no, size_t title_chars,
                         size_t content_chars, Batch& batch) {
  PrepareCounters& c = batch.counters;
  CleanedRecord rec;
  rec.line = line_no;
  std::string& arena = batch.arena;
  rec.uid_off = static_cast<uint32_t>(arena.size());
  if (raw.uid.empty()) {
    // No uid in the record (some published excerpts lost it): derive one
    // from the cleaned text, so the same product always gets the same id.
    joined_.assign(title_).push_back('\x1f');
    joined_.append(content_);
    arena += fmt::format("h{:016x}", stable_hash64(joined_));
    ++c.title_transforms[static_cast<int>(Transform::kUidDerived)];
    auto& ex = c.transform_examples[static_cast<int>(Transform::kUidDerived)];
    if (want_example(ex)) {
      ex.push_back(Example{line_no, "uid", "(none)", arena.substr(rec.uid_off)});
    }
  } else {
    arena.append(raw.uid);
  }
  rec.uid_len = static_cast<uint32_t>(arena.size() - rec.uid_off);
  rec.title_off = static_cast<uint32_t>(arena.size());
  arena.append(title_);
  rec.title_len = static_cast<uint32_t>(title_.size());
  rec.content_off = static_cast<uint32_t>(arena.size());
  arena.append(content_);
  rec.content_len = static_cast<uint32_t>(content_.size());
  rec.title_chars = static_cast<uint32_t>(title_chars);
  rec.content_chars = static_cast<uint32_t>(content_chars);

  const std::string_view uid(arena.data() + rec.uid_off, rec.uid_len);
  lowered_.clear();
  ascii_lower_into(title_, lowered_);
  const size_t title_lower_len = lowered_.size();
  lowered_.push_back('\x1f');
  ascii_lower_into(content_, lowered_);
  const std::string_view lower(lowered_);
  rec.pair_hash = stable_hash128(lower);
  rec.title_hash = stable_hash128(lower.substr(0, title_lower_len));
  rec.content_hash = stable_hash128(lower.substr(title_lower_len + 1));
  rec.uid_hash = stable_hash128(uid);
  rec.split = assign_split(uid, config_.split);
  rec.lang = detect_language(title_, content_);
  batch.records.push_back(rec);
}

void BlockCleaner::clean_field(std::string_view raw, bool is_content, uint64_t line_no,
                               std::string& out, std::array<uint64_t, kNumTransforms>& counts,
                               PrepareCounters& c) {
  const uint32_t rules = cleaner_.clean(raw, is_content, out);
  c.entities_decoded += cleaner_.last_entities();
  if (rules == 0) return;
  for (int i = 0; i <= static_cast<int>(Transform::kTruncated); ++i) {
    if ((rules & (1u << i)) == 0) continue;
    ++counts[i];
    auto& ex = c.transform_examples[i];
    if (want_example(ex))
      ex.push_back(make_example(line_no, is_content ? "content" : "title", raw, out));
  }
}

}  // namespace vitrine::dataset
