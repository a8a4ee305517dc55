// PCRE2 regex splitting, byte-level alphabet, Metaspace splitting; see the header.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "models/tokenizer/pretokenizer.h"

#include <pcre2.h>

#include <array>
#include <stdexcept>
#include <unordered_map>

#include "common/utf8.h"

namespace vitrine::models {

struct RegexSplitter::Impl {
  pcre2_code* code = nullptr;
};

RegexSplitter::RegexSplitter(std::string_view pattern, const std::string& source)
    : impl_(std::make_unique<Impl>()) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (impl_->code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    throw std::runtime_error(
        source + ": pre-tokenizer regex does not compile at offset " + std::to_string(offset) +
        ": " + reinterpret_cast<const char*>(message) + " (pattern: " + std::string(pattern) + ")");
  }
  // JIT is an optimisation only; the interpreter is used when it is unavailable.
  pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);
}

RegexSplitter::~RegexSplitter() {
  if (impl_ && impl_->code) pcre2_code_free(impl_->code);
}

std::vector<std::string_view> RegexSplitter::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  pcre2_match_data* match = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  if (match == nullptr) throw std::bad_alloc();
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t gap_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const int rc = pcre2_match(impl_->code, subject, text.size(), pos, 0, match, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(match);
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      throw std::runtime_error(std::string("pre-tokenizer regex match failed: ") +
                               reinterpret_cast<const char*>(message) +
                               "; is the text valid UTF-8?");
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (end == begin) {  // empty match: step over one character
      size_t length = 0;
      utf8::decode(text, begin, length);
      pos = begin + std::max<size_t>(length, 1);
      continue;
    }
    if (begin > gap_start) pieces.push_back(text.substr(gap_start, begin - gap_start));
    pieces.push_back(text.substr(begin, end - begin));
    gap_start = pos = end;
  }
  if (gap_start < text.size()) pieces.push_back(text.substr(gap_start));
  pcre2_match_data_free(match);
  return pieces;
}

namespace {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
// other 68 bytes to U+0100.. in byte order.
std::array<char32_t, 256> make_byte_to_code_point() {
  std::array<char32_t, 256> table{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable =
        (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    table[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return table;
}

const std::array<std::string, 256>& byte_to_utf8() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    const auto cps = make_byte_to_code_point();
    for (int b = 0; b < 256; ++b) utf8::append(t[b], cps[b]);
    return t;
  }();
  return table;
}

const std::unordered_map<char32_t, unsigned char>& code_point_to_byte() {
  static const std::unordered_map<char32_t, unsigned char> table = [] {
    std::unordered_map<char32_t, unsigned char> t;
    const auto cps = make_byte_to_code_point();
    for (int b = 0; b < 256; ++b) t.emplace(cps[b], static_cast<unsigned char>(b));
    return t;
  }();
  return table;
}

constexpr std::string_view kMetaspace = "\xE2\x96\x81";

}  // namespace

std::string byte_level_encode(std::string_view bytes) {
  const auto& table = byte_to_utf8();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) out += table[static_cast<unsigned char>(c)];
  return out;
}

std::string byte_level_decode(std::string_view text) {
  const auto& table = code_point_to_byte();
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    size_t length = 0;
    const char32_t cp = utf8::decode(text, pos, length);
    if (length == 0) length = 1;
    const auto it = table.find(cp);
    if (it != table.end())
      out.push_back(static_cast<char>(it->second));
    else
      out.append(text.substr(pos, length));
    pos += length;
  }
  return out;
}

std::vector<std::string_view> split_before_metaspace(std::string_view text) {
  std::vector<std::string_view> pieces;
  size_t start = 0;
  for (size_t pos = text.find(kMetaspace, 1); pos != std::string_view::npos;
       pos = text.find(kMetaspace, pos + 1)) {
    if (pos > start) pieces.push_back(text.substr(start, pos - start));
    start = pos;
  }
  if (start < text.size()) pieces.push_back(text.substr(start));
  return pieces;
}

}  // namespace vitrine::models
