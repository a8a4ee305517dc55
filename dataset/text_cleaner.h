// Cleaning of one title or description: the transforming rules of prepare.
//
// Order, each a knob: decode HTML character references (exactly as Python's
// html.unescape) -> strip HTML tags -> remove the "--This text refers to ...
// edition." boilerplate (descriptions) -> remove control and invisible
// characters -> collapse whitespace (Python's \s set) and trim -> cut an
// over-long description at a sentence boundary. The dropping rules (empty,
// too short, duplicates...) live in prepare, which sees whole records.
// Not a goal: spelling, casing or language fixes; everything kept is the
// source's own text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace vitrine::dataset {

struct CleanOptions {
  bool decode_entities =
      true;  // &amp; &#8217; &mdash; -> characters; off keeps raw markup in training text
  bool strip_tags = true;  // <b>, </p>, <br/>, <!-- --> -> a space; only '<' + letter, '/', '!' or
                           // '?' starts a tag, so "a < b" survives
  bool remove_boilerplate = true;  // drops Amazon's "--This text refers to ... edition." notes,
                                   // which describe the listing, not the product
  bool remove_control_chars =
      true;  // C0/C1 controls, U+FEFF, U+200B: invisible, and they confuse tokenizers
  bool collapse_whitespace = true;  // every run of Unicode whitespace -> one space, ends trimmed
  size_t max_content_chars = 5000;  // longer descriptions are cut at the last sentence end before
                                    // it (code points); 0 = no limit
};

// Which rules changed a field (bit per rule) and how many references were decoded.
enum CleanRule : uint32_t {
  kRuleEntities = 1u << 0,
  kRuleTags = 1u << 1,
  kRuleBoilerplate = 1u << 2,
  kRuleControlChars = 1u << 3,
  kRuleWhitespace = 1u << 4,
  kRuleTruncated = 1u << 5,
};

class TextCleaner {
 public:
  explicit TextCleaner(CleanOptions options) : options_(options) {}

  // Cleans `in` into `out` (replacing its contents). Returns the CleanRule
  // bits of the rules that changed something. `is_content` enables the
  // description-only rules (boilerplate, truncation).
  uint32_t clean(std::string_view in, bool is_content, std::string& out);

  const CleanOptions& options() const { return options_; }
  // Character references decoded by the last clean() call.
  size_t last_entities() const { return entities_; }

 private:
  CleanOptions options_;
  size_t entities_ = 0;
  std::string a_;  // scratch buffers, reused across calls
  std::string b_;
};

// The individual steps, exposed for tests. Each appends to `out` and returns
// true when it changed something.
bool strip_html_tags(std::string_view in, std::string& out);
bool remove_edition_boilerplate(std::string_view in, std::string& out);
// Collapses whitespace and/or drops control characters in one pass.
uint32_t normalize_spacing(std::string_view in, bool collapse, bool drop_controls,
                           std::string& out);
// Cuts `text` (valid UTF-8) to at most `max_chars` code points, at the last
// sentence end, else the last space, in the second half of the limit.
bool truncate_text(std::string& text, size_t max_chars);

}  // namespace vitrine::dataset
