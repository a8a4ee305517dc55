#include "dataset/text_cleaner.h"

#include <gtest/gtest.h>

namespace vitrine::dataset {
namespace {

std::string clean(std::string_view in, bool is_content = true, uint32_t* rules = nullptr,
                  CleanOptions options = {}) {
  TextCleaner cleaner(options);
  std::string out;
  const uint32_t r = cleaner.clean(in, is_content, out);
  if (rules != nullptr) *rules = r;
  return out;
}

TEST(TextCleaner, DecodesEntitiesAndCountsTheRule) {
  uint32_t rules = 0;
  EXPECT_EQ(clean("Judith Kerr&#8217;s best&#8211;selling &amp; &copy;", true, &rules),
            "Judith Kerr\u2019s best\u2013selling & \u00a9");
  EXPECT_EQ(rules, kRuleEntities);
  EXPECT_EQ(clean("&#x92;s", true, &rules), "\u2019s");  // windows-1252 remapping
}

TEST(TextCleaner, CleanTextPassesThroughUntouched) {
  uint32_t rules = 1;
  EXPECT_EQ(clean("Girls Ballet Tutu Neon Pink", false, &rules), "Girls Ballet Tutu Neon Pink");
  EXPECT_EQ(rules, 0u);
}

TEST(TextCleaner, StripsTagsButKeepsComparisons) {
  std::string out;
  EXPECT_TRUE(strip_html_tags("<p>Bold <b>claim</b><br/>end</p>", out));
  EXPECT_EQ(out, " Bold  claim  end ");
  out.clear();
  EXPECT_FALSE(strip_html_tags("a < b and c > d, 3<4", out));
  EXPECT_EQ(out, "a < b and c > d, 3<4");
  out.clear();
  EXPECT_TRUE(strip_html_tags("x<!-- note -->y", out));
  EXPECT_EQ(out, "x y");
  // Encoded tags are decoded first, then stripped.
  uint32_t rules = 0;
  EXPECT_EQ(clean("One&lt;br&gt;Two", true, &rules), "One Two");
  EXPECT_EQ(rules, kRuleEntities | kRuleTags);
}

TEST(TextCleaner, RemovesEditionBoilerplateGluedOrNot) {
  uint32_t rules = 0;
  EXPECT_EQ(clean("A fine read.--This text refers to theHardcoveredition.", true, &rules),
            "A fine read.");
  EXPECT_EQ(rules, kRuleBoilerplate);
  EXPECT_EQ(
      clean("Story.--This text refers to an out of print or unavailable edition of this title.",
            true),
      "Story.");
  EXPECT_EQ(clean("--Brian Bruya--This text refers to an alternatePaperbackedition.", true),
            "--Brian Bruya");
  EXPECT_EQ(clean("--This text refers to thePaperbackedition.", true), "");
  // Between two parts it keeps them apart.
  EXPECT_EQ(clean("First.--This text refers to theAudio CDedition.Second.", true),
            "First. Second.");
  // Only descriptions carry the note; without "edition" nearby nothing is cut.
  EXPECT_EQ(clean("x--This text refers to nothing in particular", true),
            "x--This text refers to nothing in particular");
  EXPECT_EQ(clean("T--This text refers to theHardcoveredition.", false),
            "T--This text refers to theHardcoveredition.");
}

TEST(TextCleaner, CollapsesUnicodeWhitespaceLikePython) {
  uint32_t rules = 0;
  // Python's \s: tab, newline, U+001C..U+001F, U+0085, U+00A0, U+2000..U+200A, U+3000...
  EXPECT_EQ(clean("  a\t\tb \u00a0c\u2009d\u3000e\x1f"
                  "f\n",
                  true, &rules),
            "a b c d e f");
  EXPECT_EQ(rules, kRuleWhitespace);
  EXPECT_EQ(clean("a  b", true), "a b");
  EXPECT_EQ(clean("&#160;x&nbsp;", true), "x");
}

TEST(TextCleaner, RemovesControlAndInvisibleCharacters) {
  uint32_t rules = 0;
  EXPECT_EQ(clean(std::string("a\x01"
                              "b\x7f"
                              "c\xC2\x80"
                              "d\xEF\xBB\xBF"
                              "e\xE2\x80\x8B"
                              "f"),
                  true, &rules),
            "abcdef");
  EXPECT_EQ(rules, kRuleControlChars);
  CleanOptions keep;
  keep.remove_control_chars = false;
  EXPECT_EQ(clean("a\x01"
                  "b",
                  true, nullptr, keep),
            "a\x01"
            "b");
}

TEST(TextCleaner, TruncatesLongDescriptionsAtASentence) {
  std::string text =
      "First sentence is right here. Second sentence is longer than the first. Third.";
  EXPECT_TRUE(truncate_text(text, 50));
  EXPECT_EQ(text, "First sentence is right here.");
  // A sentence end in the first half of the limit would waste too much: cut at a word.
  std::string early = "Short one. Then a very long second sentence that runs on and on.";
  EXPECT_TRUE(truncate_text(early, 40));
  EXPECT_EQ(early, "Short one. Then a very long second");
  std::string words = "alpha beta gamma delta epsilon zeta eta theta";
  EXPECT_TRUE(truncate_text(words, 20));
  EXPECT_EQ(words, "alpha beta gamma");
  std::string short_text = "short";
  EXPECT_FALSE(truncate_text(short_text, 20));
  std::string accents =
      "\u00e9\u00e9\u00e9\u00e9 \u00e9\u00e9\u00e9\u00e9";  // 9 code points, 17 bytes
  EXPECT_FALSE(truncate_text(accents, 9));
  EXPECT_TRUE(truncate_text(accents, 8));
  EXPECT_EQ(accents, "\u00e9\u00e9\u00e9\u00e9");
  CleanOptions options;
  options.max_content_chars = 50;
  uint32_t rules = 0;
  EXPECT_EQ(clean("First sentence is right here. Second sentence is longer than the first. Third.",
                  true, &rules, options),
            "First sentence is right here.");
  EXPECT_EQ(rules, kRuleTruncated);
}

TEST(TextCleaner, EveryRuleCanBeSwitchedOff) {
  CleanOptions off;
  off.decode_entities = off.strip_tags = off.remove_boilerplate = off.remove_control_chars =
      off.collapse_whitespace = false;
  off.max_content_chars = 0;
  const std::string raw = " a&amp;b <b>x</b>  y--This text refers to thePaperbackedition.\x01 ";
  uint32_t rules = 1;
  EXPECT_EQ(clean(raw, true, &rules, off), raw);
  EXPECT_EQ(rules, 0u);
}

}  // namespace
}  // namespace vitrine::dataset
