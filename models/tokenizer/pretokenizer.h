// Pre-tokenization steps of Hugging Face tokenizers: regex splitting through
// PCRE2 (UTF + UCP, so \p{L}, \p{N} and \s are Unicode-aware), the GPT-2
// byte-level alphabet (each byte <-> one printable code point) and
// Metaspace ("▁" for spaces, split before each "▁").
//
// Not a goal: the other pre-tokenizers (Whitespace, Punctuation, Digits,
// BertPreTokenizer...), offsets, and the regex behaviours other than
// "Isolated" — tokenizer.json files that need them are refused upstream.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine::models {

// The pre-tokenization regex of GPT-2 (used by ByteLevel with use_regex).
inline constexpr std::string_view kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// A compiled PCRE2 pattern; immutable, safe to share between threads.
class RegexSplitter {
 public:
  // Throws std::runtime_error naming `source` when the pattern does not compile.
  RegexSplitter(std::string_view pattern, const std::string& source);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Splits valid UTF-8 `text` into matches and the gaps between them, in
  // order, no piece empty (Hugging Face's "Isolated" behaviour).
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// GPT-2 byte-level alphabet: every byte as the UTF-8 of its code point.
std::string byte_level_encode(std::string_view bytes);
// Inverse of byte_level_encode; code points outside the alphabet are copied
// through unchanged.
std::string byte_level_decode(std::string_view text);

// Splits `text` into pieces that each start at a "▁" (U+2581) except
// possibly the first (Metaspace with split = true).
std::vector<std::string_view> split_before_metaspace(std::string_view text);

}  // namespace vitrine::models
