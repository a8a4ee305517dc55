#include "common/utf8.h"

#include <fmt/format.h>

namespace vitrine::utf8 {
namespace {

// Length of the well-formed sequence starting at s[i], or 0 when ill-formed.
// When ill-formed, `bad` is the length of the maximal ill-formed subpart
// (Unicode's "maximal subpart" rule, which Python follows).
size_t sequence_length(const unsigned char* s, size_t n, size_t i, size_t& bad) {
  const unsigned char c = s[i];
  bad = 1;
  if (c < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= n) return 0;
    const unsigned char b = s[i + k];
    const unsigned char l = k == 1 ? lo : 0x80;
    const unsigned char h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return 0;
    bad = k + 1;
  }
  return need + 1;
}

}  // namespace

bool is_valid(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t bad = 0;
  for (size_t i = 0; i < s.size();) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const size_t len = sequence_length(p, s.size(), i, bad);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

size_t repair(std::string_view in, std::string& out) {
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  size_t replaced = 0;
  size_t start = 0;
  size_t bad = 0;
  for (size_t i = 0; i < in.size();) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const size_t len = sequence_length(p, in.size(), i, bad);
    if (len != 0) {
      i += len;
      continue;
    }
    out.append(in.data() + start, i - start);
    append(out, kReplacement);
    ++replaced;
    // One U+FFFD per maximal ill-formed subpart (a lead byte and the valid
    // continuation bytes that follow it), as Python does.
    i += bad;
    start = i;
  }
  out.append(in.data() + start, in.size() - start);
  return replaced;
}

size_t count_code_points(std::string_view s) {
  size_t n = 0;
  for (const char ch : s) n += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
  return n;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

char32_t decode(std::string_view s, size_t pos, size_t& len) {
  const auto c = static_cast<unsigned char>(s[pos]);
  auto cont = [&](size_t k) {
    return static_cast<char32_t>(static_cast<unsigned char>(s[pos + k]) & 0x3F);
  };
  if (c < 0x80) {
    len = 1;
    return c;
  }
  if (c < 0xE0) {
    len = 2;
    return (static_cast<char32_t>(c & 0x1F) << 6) | cont(1);
  }
  if (c < 0xF0) {
    len = 3;
    return (static_cast<char32_t>(c & 0x0F) << 12) | (cont(1) << 6) | cont(2);
  }
  len = 4;
  return (static_cast<char32_t>(c & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
}

size_t prefix_bytes(std::string_view s, size_t max_code_points) {
  size_t seen = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (seen == max_code_points) return i;
      ++seen;
    }
  }
  return s.size();
}

std::string printable(std::string_view s) {
  std::string valid;
  repair(s, valid);
  std::string out;
  out.reserve(valid.size());
  for (size_t i = 0; i < valid.size();) {
    size_t len = 1;
    const char32_t cp = decode(valid, i, len);
    const bool control = (cp < 0x20 && cp != '\t') || (cp >= 0x7f && cp <= 0x9f);
    const bool bidi = (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
    if (control) {
      out += fmt::format("\\x{:02x}", static_cast<uint32_t>(cp));
    } else if (bidi) {
      out += fmt::format("\\u{:04x}", static_cast<uint32_t>(cp));
    } else {
      out.append(valid, i, len);
    }
    i += len;
  }
  return out;
}

}  // namespace vitrine::utf8
