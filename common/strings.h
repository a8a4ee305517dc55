// Small string helpers shared across the tree: ASCII whitespace and trimming.
// Byte-wise and locale-free (unlike <cctype>); Unicode spaces are the
// text cleaner's business (dataset/text_cleaner.h), not these.
#pragma once

#include <string_view>

namespace vitrine {

// The C locale's isspace set: space, \t, \n, \v, \f, \r.
constexpr bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// `s` without leading and trailing ASCII whitespace (a view into `s`).
constexpr std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace vitrine
