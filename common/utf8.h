// UTF-8 helpers for the text pipeline: validation, repair, code points.
//
// Lengths in vitrine are counted in code points, as Python's len() does, so
// that the dataset's limits and statistics mean the same as in the study's
// published notebooks. Not a goal: normalisation (NFC/NFKC) or case folding
// beyond ASCII.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace vitrine::utf8 {

inline constexpr char32_t kReplacement = 0xFFFD;

// True when `s` is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF).
bool is_valid(std::string_view s);

// Copies `in` to `out` (appending), replacing every maximal ill-formed
// subsequence with U+FFFD, the way Python's bytes.decode(errors="replace")
// does. Returns the number of replacements made.
size_t repair(std::string_view in, std::string& out);

// Number of code points in valid UTF-8 `s`.
size_t count_code_points(std::string_view s);

// Appends the UTF-8 encoding of `cp` (must be a scalar value) to `out`.
void append(std::string& out, char32_t cp);

// Decodes the code point at `s[pos]` of valid UTF-8, returning it and
// setting `len` to its byte length.
char32_t decode(std::string_view s, size_t pos, size_t& len);

// `s` made safe to print on a terminal: ill-formed bytes become U+FFFD,
// and control characters (C0 but tab, DEL, C1) and the bidirectional
// overrides and isolates (U+202A..U+202E, U+2066..U+2069) are written as
// escapes ("\x1b", "\u202e"), so text from a client can neither move the
// cursor, recolour or retitle the terminal, nor reorder what is shown.
std::string printable(std::string_view s);

// Largest prefix of valid UTF-8 `s` of at most `max_code_points` code points,
// in bytes.
size_t prefix_bytes(std::string_view s, size_t max_code_points);

}  // namespace vitrine::utf8
