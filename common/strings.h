// Small string helpers shared across the tree: ASCII whitespace, trimming
// and case folding (what HTTP and the dataset's rules compare without case).
// Byte-wise and locale-free (unlike <cctype>); Unicode spaces are the
// text cleaner's business (dataset/text_cleaner.h), not these.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>

namespace vitrine {

// The C locale's isspace set: space, \t, \n, \v, \f, \r.
constexpr bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// `s` without leading ASCII whitespace (a view into `s`).
constexpr std::string_view trim_start(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  return s;
}

// `s` without leading and trailing ASCII whitespace (a view into `s`).
constexpr std::string_view trim(std::string_view s) {
  s = trim_start(s);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// 'A'..'Z' to 'a'..'z'; every other byte unchanged.
constexpr char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

// Equal but for ASCII case.
inline bool ascii_iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

}  // namespace vitrine
