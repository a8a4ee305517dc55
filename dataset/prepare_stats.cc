#include "dataset/prepare_stats.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/utf8.h"

namespace vitrine::dataset {

std::string_view transform_name(Transform t) {
  switch (t) {
    case Transform::kEntities:
      return "html_entities_decoded";
    case Transform::kTags:
      return "html_tags_stripped";
    case Transform::kBoilerplate:
      return "edition_boilerplate_removed";
    case Transform::kControlChars:
      return "control_chars_removed";
    case Transform::kWhitespace:
      return "whitespace_collapsed";
    case Transform::kTruncated:
      return "content_truncated";
    case Transform::kUtf8Repaired:
      return "invalid_utf8_repaired";
    case Transform::kUidDerived:
      return "uid_derived";
    case Transform::kDuplicateKeys:
      return "duplicate_keys_first_used";
  }
  return "unknown";
}

std::string_view drop_name(Drop d) {
  switch (d) {
    case Drop::kEmptyTitle:
      return "empty_title";
    case Drop::kShortTitle:
      return "short_title";
    case Drop::kLongTitle:
      return "long_title";
    case Drop::kEmptyContent:
      return "empty_content";
    case Drop::kShortContent:
      return "short_content";
    case Drop::kContentIsTitle:
      return "content_equals_title";
    case Drop::kDuplicate:
      return "duplicate";
    case Drop::kDuplicateUid:
      return "duplicate_uid";
  }
  return "unknown";
}

namespace {

void take_examples(std::vector<Example>& into, std::vector<Example>&& from, size_t max) {
  for (auto& e : from) {
    if (into.size() >= max) break;
    into.push_back(std::move(e));
  }
}

// Byte offset of code point boundary at or before `pos`.
size_t boundary_before(std::string_view s, size_t pos) {
  pos = std::min(pos, s.size());
  while (pos > 0 && pos < s.size() && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) --pos;
  return pos;
}

std::string excerpt(std::string_view s, size_t from, size_t width) {
  from = boundary_before(s, from);
  const std::string_view rest = s.substr(from);
  const size_t len = utf8::prefix_bytes(rest, width);
  std::string out;
  if (from > 0) out += "…";
  out.append(rest.substr(0, len));
  if (len < rest.size()) out += "…";
  return out;
}

}  // namespace

void PrepareCounters::merge(PrepareCounters&& other, size_t max_examples, size_t max_malformed) {
  lines += other.lines;
  records += other.records;
  for (int i = 0; i < kNumMalformed; ++i) malformed[i] += other.malformed[i];
  for (int i = 0; i < kNumTransforms; ++i) {
    title_transforms[i] += other.title_transforms[i];
    content_transforms[i] += other.content_transforms[i];
    take_examples(transform_examples[i], std::move(other.transform_examples[i]), max_examples);
  }
  for (int i = 0; i < kNumDrops; ++i) {
    drops[i] += other.drops[i];
    take_examples(drop_examples[i], std::move(other.drop_examples[i]), max_examples);
  }
  raw_empty_content += other.raw_empty_content;
  entities_decoded += other.entities_decoded;
  title_before.merge(other.title_before);
  content_before.merge(other.content_before);
  take_examples(malformed_examples, std::move(other.malformed_examples), max_malformed);
}

uint64_t PrepareCounters::malformed_total() const {
  uint64_t total = 0;
  for (int i = 1; i < kNumMalformed; ++i) total += malformed[i];
  return total;
}

Example make_example(uint64_t line, std::string_view field, std::string_view before,
                     std::string_view after, size_t width) {
  size_t common = 0;
  while (common < before.size() && common < after.size() && before[common] == after[common])
    ++common;
  // Start a little before the first difference so the reader sees context.
  size_t from = 0;
  if (common > 40) {
    const size_t back = utf8::prefix_bytes(before.substr(0, common),
                                           utf8::count_code_points(before.substr(0, common)) - 40);
    from = back;
  }
  Example e;
  e.line = line;
  e.field = std::string(field);
  e.before = excerpt(before, from, width);
  e.after = excerpt(after, std::min(from, after.size()), width);
  return e;
}

Example make_record_example(uint64_t line, std::string_view title, std::string_view content) {
  Example e = make_example(line, "record", title, title, 80);
  e.after = make_example(line, "", content, content, 80).before;
  return e;
}

namespace {

std::string md_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n' || c == '\r') {
      out += ' ';
    } else if (c == '`') {
      out += '\'';
    } else {
      out += c;
    }
  }
  return out;
}

std::string num(const nlohmann::ordered_json& j) {
  if (j.is_number_unsigned() || j.is_number_integer()) {
    // Thousands separators, as the docs write figures.
    std::string digits = std::to_string(j.get<int64_t>());
    std::string out;
    const bool neg = !digits.empty() && digits[0] == '-';
    if (neg) digits.erase(0, 1);
    for (size_t i = 0; i < digits.size(); ++i) {
      if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
      out += digits[i];
    }
    return neg ? "-" + out : out;
  }
  if (j.is_number_float()) return fmt::format("{:.1f}", j.get<double>());
  if (j.is_string()) return j.get<std::string>();
  return j.dump();
}

std::string pct(uint64_t part, uint64_t whole) {
  return whole == 0 ? "0.0 %"
                    : fmt::format("{:.1f} %",
                                  100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

void examples_table(std::string& md, const nlohmann::ordered_json& examples) {
  if (examples.empty()) return;
  md += "\n| line | field | before | after |\n| --- | --- | --- | --- |\n";
  for (const auto& e : examples) {
    md += fmt::format("| {} | {} | {} | {} |\n", e["line"].get<uint64_t>(),
                      md_escape(e["field"].get<std::string>()),
                      md_escape(e["before"].get<std::string>()),
                      md_escape(e["after"].get<std::string>()));
  }
}

}  // namespace

std::string render_report(const nlohmann::ordered_json& s) {
  std::string md;
  const auto& input = s["input"];
  const auto& rec = s["records"];
  const uint64_t lines = input["lines"].get<uint64_t>();
  md += "# Dataset preparation report\n\n";
  md += fmt::format("Input `{}`: {} bytes{}, {} lines, fingerprint `{}`.\n",
                    input["name"].get<std::string>(), num(input["bytes"]),
                    input["gzip"].get<bool>() ? " (gzip)" : "", num(input["lines"]),
                    input["fingerprint"].get<std::string>());
  if (!input["stream_error"].is_null()) {
    md += fmt::format(
        "\n**The input stream ended early:** {}. The lines before that point were used.\n",
        input["stream_error"].get<std::string>());
  }
  md += fmt::format(
      "\n{} records parsed, {} kept ({} of the lines), {} dropped, {} malformed lines set aside.\n",
      num(rec["parsed"]), num(rec["kept"]), pct(rec["kept"].get<uint64_t>(), lines),
      num(rec["dropped"]), num(s["malformed"]["total"]));

  md += "\n## Malformed lines\n\n| reason | lines |\n| --- | --- |\n";
  for (const auto& [reason, n] : s["malformed"]["by_reason"].items())
    md += fmt::format("| {} | {} |\n", reason, num(n));
  if (!s["malformed"]["first"].empty()) {
    md +=
        "\nFirst malformed lines:\n\n| line | reason | detail | excerpt |\n| --- | --- | --- | --- "
        "|\n";
    for (const auto& e : s["malformed"]["first"]) {
      md += fmt::format("| {} | {} | {} | {} |\n", e["line"].get<uint64_t>(),
                        e["reason"].get<std::string>(), md_escape(e["detail"].get<std::string>()),
                        md_escape(e["excerpt"].get<std::string>()));
    }
  }

  md +=
      "\n## Cleaning rules\n\nRules that change text, in the order applied; counts are fields "
      "changed. The last three are about whole records: invalid_utf8_repaired, uid_derived and "
      "duplicate_keys_first_used count records, in the titles column.\n\n";
  md += "| rule | titles | contents |\n| --- | --- | --- |\n";
  for (const auto& t : s["transforms"]) {
    md += fmt::format("| {} | {} | {} |\n", t["rule"].get<std::string>(), num(t["titles"]),
                      num(t["contents"]));
  }
  md += fmt::format("\n{} character references decoded in all.\n", num(s["entities_decoded"]));
  md +=
      "\nRules that drop records, in the order applied; each record is counted by the first rule "
      "that drops it.\n\n";
  md += "| rule | records | of parsed |\n| --- | --- | --- |\n";
  const uint64_t parsed = rec["parsed"].get<uint64_t>();
  for (const auto& d : s["drops"]) {
    md += fmt::format("| {} | {} | {} |\n", d["rule"].get<std::string>(), num(d["records"]),
                      pct(d["records"].get<uint64_t>(), parsed));
  }
  md += "\n### Examples\n";
  for (const auto& t : s["transforms"]) {
    if (t["examples"].empty()) continue;
    md += fmt::format("\n**{}**\n", t["rule"].get<std::string>());
    examples_table(md, t["examples"]);
  }
  for (const auto& d : s["drops"]) {
    if (d["examples"].empty()) continue;
    md += fmt::format("\n**{}**\n", d["rule"].get<std::string>());
    examples_table(md, d["examples"]);
  }

  md +=
      "\n## Lengths (code points)\n\n| field | stage | count | min | p5 | p25 | median | p75 | p95 "
      "| p99 | max | mean |\n";
  md += "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const char* field : {"title", "content"}) {
    for (const char* stage : {"before", "after"}) {
      const auto& h = s["lengths"][field][stage];
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", field,
                        stage, num(h["count"]), num(h["min"]), num(h["p5"]), num(h["p25"]),
                        num(h["p50"]), num(h["p75"]), num(h["p95"]), num(h["p99"]), num(h["max"]),
                        num(h["mean"]));
    }
  }
  md +=
      "\n\"before\" counts non-empty raw fields after JSON decoding; \"after\" counts kept "
      "products.\n";

  md += "\n## Languages\n\n| language | products | share |\n| --- | --- | --- |\n";
  const uint64_t kept = rec["kept"].get<uint64_t>();
  for (const auto& [lang, n] : s["languages"].items()) {
    md += fmt::format("| {} | {} | {} |\n", lang, num(n), pct(n.get<uint64_t>(), kept));
  }

  const auto& dup = s["duplicates"];
  md += "\n## Duplicates\n\n| measure | value |\n| --- | --- |\n";
  for (const auto& [k, v] : dup.items())
    md += fmt::format(
        "| {} | {} |\n", k,
        v.is_number_float() ? fmt::format("{:.2f} %", 100.0 * v.get<double>()) : num(v));

  md += "\n## Splits\n\n| split | products | share |\n| --- | --- | --- |\n";
  for (const auto& [split, n] : s["splits"]["products"].items()) {
    md += fmt::format("| {} | {} | {} |\n", split, num(n), pct(n.get<uint64_t>(), kept));
  }

  if (s.contains("tasks")) {
    md += "\n## Task files\n\n| task | train | validation | test |\n| --- | --- | --- | --- |\n";
    for (const auto& [task, counts] : s["tasks"]["examples"].items()) {
      md += fmt::format("| {} | {} | {} | {} |\n", task, num(counts["train"]),
                        num(counts["validation"]), num(counts["test"]));
    }
  }
  if (s.contains("tasks") && s["tasks"].contains("details")) {
    // Each task's counters: scalars in one table, each breakdown in its own.
    for (const auto& [task, detail] : s["tasks"]["details"].items()) {
      if (!detail.is_object()) continue;
      md += fmt::format("\n### {} examples\n\n| measure | value |\n| --- | --- |\n", task);
      for (const auto& [k, v] : detail.items()) {
        if (!v.is_object()) md += fmt::format("| {} | {} |\n", k, num(v));
      }
      for (const auto& [k, v] : detail.items()) {
        if (!v.is_object()) continue;
        md += fmt::format("\n| {} | count |\n| --- | --- |\n", k);
        for (const auto& [name, n] : v.items()) md += fmt::format("| {} | {} |\n", name, num(n));
      }
    }
  }
  md += "\n## Files\n\n| file | bytes |\n| --- | --- |\n";
  for (const auto& [f, n] : s["files"].items()) md += fmt::format("| {} | {} |\n", f, num(n));
  return md;
}

}  // namespace vitrine::dataset
