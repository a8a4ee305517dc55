// ASCII case folding for what HTTP compares without case: header names,
// tokens, host names. Byte-wise and locale-free; other bytes are unchanged.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>

namespace vitrine::gateway {

constexpr char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

inline bool ascii_iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

}  // namespace vitrine::gateway
