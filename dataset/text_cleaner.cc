#include "dataset/text_cleaner.h"

#include <cstring>

#include "common/html_unescape.h"
#include "common/utf8.h"

namespace vitrine::dataset {
namespace {

constexpr std::string_view kBoilerplateStart = "--This text refers to";
constexpr size_t kMaxBoilerplate = 160;  // bytes searched for the closing "edition"
constexpr size_t kMaxTag = 512;          // a '<' without '>' within this many bytes is text

bool is_ascii_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Kind of the code point at s[i] for spacing: 0 = keep, 1 = whitespace, 2 = control.
// `len` receives its byte length. Whitespace is Python's str.isspace() set.
int spacing_class(std::string_view s, size_t i, size_t& len) {
  const auto c = static_cast<unsigned char>(s[i]);
  len = 1;
  if (c < 0x80) {
    if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
    if (c < 0x20 || c == 0x7F) return 2;
    return 0;
  }
  const char32_t cp = utf8::decode(s, i, len);
  if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
      cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000) {
    return 1;
  }
  if ((cp >= 0x80 && cp <= 0x9F) || cp == 0xFEFF || cp == 0x200B) return 2;
  return 0;
}

}  // namespace

bool strip_html_tags(std::string_view in, std::string& out) {
  bool changed = false;
  size_t start = 0;
  size_t pos = 0;
  while ((pos = in.find('<', pos)) != std::string_view::npos) {
    const char next = pos + 1 < in.size() ? in[pos + 1] : '\0';
    if (!(is_ascii_alpha(next) || next == '/' || next == '!' || next == '?')) {
      ++pos;
      continue;
    }
    const size_t limit = std::min(in.size(), pos + kMaxTag);
    size_t end = pos + 1;
    while (end < limit && in[end] != '>' && in[end] != '<') ++end;
    if (end >= limit || in[end] != '>') {
      ++pos;
      continue;
    }
    out.append(in.data() + start, pos - start);
    out.push_back(' ');
    changed = true;
    pos = end + 1;
    start = pos;
  }
  out.append(in.data() + start, in.size() - start);
  return changed;
}

bool remove_edition_boilerplate(std::string_view in, std::string& out) {
  bool changed = false;
  size_t start = 0;
  size_t pos = 0;
  while ((pos = in.find(kBoilerplateStart, pos)) != std::string_view::npos) {
    // The note ends at the first "edition" (then " of this title" and "." may follow).
    const std::string_view window = in.substr(pos, kMaxBoilerplate);
    const size_t ed = window.find("edition");
    if (ed == std::string_view::npos) {
      pos += kBoilerplateStart.size();
      continue;
    }
    size_t end = pos + ed + std::strlen("edition");
    constexpr std::string_view kOfThisTitle = " of this title";
    if (in.substr(end, kOfThisTitle.size()) == kOfThisTitle) end += kOfThisTitle.size();
    if (end < in.size() && in[end] == '.') ++end;
    out.append(in.data() + start, pos - start);
    // The note is often glued between two words: keep them apart, without
    // adding a space at either end.
    const bool text_before = !out.empty() && out.back() != ' ';
    const bool text_after = end < in.size() && in[end] != ' ';
    if (text_before && text_after) out.push_back(' ');
    changed = true;
    pos = end;
    start = end;
  }
  out.append(in.data() + start, in.size() - start);
  return changed;
}

uint32_t normalize_spacing(std::string_view in, bool collapse, bool drop_controls,
                           std::string& out) {
  // Quick scan: most fields need nothing (single spaces between words only).
  uint32_t found = 0;
  size_t len = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const size_t n = in.size();
  for (size_t i = 0; i < n; i += len) {
    const unsigned char c = p[i];
    len = 1;
    if (c > 0x20 && c < 0x7F) continue;
    if (c == ' ' && i > 0 && i + 1 < n && p[i + 1] > 0x20 && p[i + 1] < 0x7F)
      continue;  // one space between words
    if (c >= 0x80 && c != 0xC2 && c != 0xE1 && c != 0xE2 && c != 0xE3 && c != 0xEF) {
      len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;  // lead bytes that start no space or control
      continue;
    }
    const int cls = spacing_class(in, i, len);
    if (cls == 2 && drop_controls) found |= kRuleControlChars;
    if (cls != 1 || !collapse) continue;
    size_t next_len = 0;
    const bool single =
        c == ' ' && i > 0 && i + 1 < in.size() && spacing_class(in, i + 1, next_len) == 0;
    if (!single) found |= kRuleWhitespace;
  }
  if (found == 0) {
    out.append(in);
    return 0;
  }
  // Rewrite: drop controls, one ' ' per whitespace run between kept characters.
  const size_t out_start = out.size();
  bool pending_space = false;
  for (size_t i = 0; i < in.size(); i += len) {
    const int cls = spacing_class(in, i, len);
    if (cls == 2 && drop_controls) continue;
    if (cls == 1 && collapse) {
      pending_space = out.size() > out_start;
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.append(in.data() + i, len);
  }
  return found;
}

bool truncate_text(std::string& text, size_t max_chars) {
  if (max_chars == 0 || text.size() <= max_chars) return false;  // bytes >= code points
  if (utf8::count_code_points(text) <= max_chars) return false;
  const size_t limit = utf8::prefix_bytes(text, max_chars);
  const std::string_view head(text.data(), limit);
  size_t cut = std::string_view::npos;
  for (const char* end : {". ", "! ", "? "}) {
    const size_t p = head.rfind(end);
    if (p != std::string_view::npos && (cut == std::string_view::npos || p > cut)) cut = p;
  }
  if (cut != std::string_view::npos && cut + 1 >= limit / 2) {
    text.resize(cut + 1);
    return true;
  }
  const size_t space = head.rfind(' ');
  text.resize(space != std::string_view::npos && space >= limit / 2 ? space : limit);
  return true;
}

uint32_t TextCleaner::clean(std::string_view in, bool is_content, std::string& out) {
  uint32_t rules = 0;
  entities_ = 0;
  std::string_view cur = in;
  if (options_.decode_entities && std::memchr(cur.data(), '&', cur.size()) != nullptr) {
    a_.clear();
    entities_ = html_unescape(cur, a_);
    if (entities_ > 0) rules |= kRuleEntities;
    cur = a_;
  }
  if (options_.strip_tags && std::memchr(cur.data(), '<', cur.size()) != nullptr) {
    std::string& dst = cur.data() == a_.data() ? b_ : a_;
    dst.clear();
    if (strip_html_tags(cur, dst)) rules |= kRuleTags;
    cur = dst;
  }
  if (is_content && options_.remove_boilerplate &&
      cur.find(kBoilerplateStart) != std::string_view::npos) {
    std::string& dst = cur.data() == a_.data() ? b_ : a_;
    dst.clear();
    if (remove_edition_boilerplate(cur, dst)) rules |= kRuleBoilerplate;
    cur = dst;
  }
  out.clear();
  if (options_.collapse_whitespace || options_.remove_control_chars) {
    rules |=
        normalize_spacing(cur, options_.collapse_whitespace, options_.remove_control_chars, out);
  } else {
    out.assign(cur);
  }
  if (is_content && truncate_text(out, options_.max_content_chars)) rules |= kRuleTruncated;
  return rules;
}

}  // namespace vitrine::dataset
