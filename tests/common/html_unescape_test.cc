// Tests for vitrine::html_unescape against Python 3.11's html.unescape.
//
// The reference results live in tests/data/html_unescape_golden.jsonl, written
// by scripts/gen_html_unescape_golden.py (hand-written edge cases plus every
// shared sample string containing '&'). Not a goal: timing; throughput is
// measured outside the test suite.
#include "common/html_unescape.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

namespace vitrine {
namespace {

constexpr const char* kGoldenPath = VITRINE_TEST_DATA_DIR "/html_unescape_golden.jsonl";
constexpr const char* kSamplePath = VITRINE_SHARED_DIR "/data/amazon_titles_sample.jsonl";

// The generator writes 618 cases (427 hand-written, the rest from the shared
// sample); a truncated or emptied golden file must fail, not pass vacuously.
constexpr size_t kMinGoldenCases = 600;

struct GoldenCase {
  std::string in;
  std::string out;
};

std::vector<GoldenCase> read_golden() {
  std::vector<GoldenCase> cases;
  std::ifstream file(kGoldenPath, std::ios::binary);
  if (!file) {
    ADD_FAILURE() << "cannot open " << kGoldenPath
                  << ": run /usr/bin/python3 scripts/gen_html_unescape_golden.py";
    return cases;
  }
  std::string line;
  while (std::getline(file, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    cases.push_back({j.at("in").get<std::string>(), j.at("out").get<std::string>()});
  }
  return cases;
}

std::string unescape(std::string_view in) {
  std::string out;
  html_unescape(in, out);
  return out;
}

TEST(HtmlUnescape, MatchesPythonOnEveryGoldenCase) {
  const std::vector<GoldenCase> cases = read_golden();
  ASSERT_GE(cases.size(), kMinGoldenCases) << kGoldenPath << " looks truncated";
  size_t n_failed = 0;
  for (const GoldenCase& c : cases) {
    std::string out;
    const size_t n_replaced = html_unescape(c.in, out);
    EXPECT_EQ(out, c.out) << "input: " << nlohmann::json(c.in).dump();
    // 0 replacements promises an exact copy, and vice versa.
    EXPECT_EQ(n_replaced == 0, out == c.in) << "input: " << nlohmann::json(c.in).dump();
    n_failed += out != c.out;
  }
  EXPECT_EQ(n_failed, 0u) << "of " << cases.size() << " golden cases";
}

TEST(HtmlUnescape, TextWithoutAmpersandIsCopied) {
  std::string out;
  EXPECT_EQ(html_unescape("", out), 0u);
  EXPECT_EQ(out, "");
  EXPECT_EQ(html_unescape("plain text; #1 < 2 caf\xC3\xA9", out), 0u);
  EXPECT_EQ(out, "plain text; #1 < 2 caf\xC3\xA9");
}

TEST(HtmlUnescape, UnmatchedReferencesAreCopiedAndNotCounted) {
  std::string out;
  EXPECT_EQ(html_unescape("AT&T & Q&A &foo; &#; &#x; &", out), 0u);
  EXPECT_EQ(out, "AT&T & Q&A &foo; &#; &#x; &");
}

TEST(HtmlUnescape, AppendsToExistingOutput) {
  std::string out = "prefix|";
  EXPECT_EQ(html_unescape("no entity", out), 0u);
  EXPECT_EQ(out, "prefix|no entity");
  EXPECT_EQ(html_unescape("|a &amp; b", out), 1u);
  EXPECT_EQ(out, "prefix|no entity|a & b");
}

TEST(HtmlUnescape, CountsReplacements) {
  std::string out;
  EXPECT_EQ(html_unescape("&lt;b&gt; &#65;&#x42; &ampx &bogus;", out), 5u);
  EXPECT_EQ(out, "<b> AB &x &bogus;");
}

TEST(HtmlUnescape, DecodesReadableNamedCases) {
  // \uXXXX takes exactly four hex digits, so "\u00A92019" is U+00A9 then "2019".
  EXPECT_EQ(unescape("Tom &amp; Jerry"), "Tom & Jerry");
  EXPECT_EQ(unescape("&quot;Hi&quot; &mdash; &copy;2019"), "\"Hi\" \u2014 \u00A92019");
  EXPECT_EQ(unescape("&copy2019"), "\u00A92019");          // legacy name, no ';'
  EXPECT_EQ(unescape("&notit;"), "\u00ACit;");             // longest prefix: &not
  EXPECT_EQ(unescape("&notin;"), "\u2209");                // exact name wins
  EXPECT_EQ(unescape("&amp;amp;"), "&amp;");               // output not re-scanned
  EXPECT_EQ(unescape("&NotEqualTilde;"), "\u2242\u0338");  // two code points
  EXPECT_EQ(unescape("&Alpha"), "&Alpha");                 // ';' required here
}

TEST(HtmlUnescape, DecodesNumericEdgeCasesLikePython) {
  EXPECT_EQ(unescape("&#x2019;s &#8217;"), "\xE2\x80\x99s \xE2\x80\x99");
  EXPECT_EQ(unescape("&#150;&#x97;"), "\xE2\x80\x93\xE2\x80\x94");  // Windows-1252 table
  EXPECT_EQ(unescape("&#x81;"), "\xC2\x81");                        // undefined in 1252: kept
  EXPECT_EQ(unescape("&#0;&#xD800;&#x110000;"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(unescape("a&#1;b&#x7F;c&#xFFFE;d"), "abcd");  // decode to nothing
  EXPECT_EQ(unescape("&#99999999999999999999;"), "\xEF\xBF\xBD");
  EXPECT_EQ(unescape("&#65&#x42g"), "ABg");  // ';' optional
}

// Reads the shared sample directly, so a stale golden file shows up here.
TEST(HtmlUnescape, SharedSampleAgreesWithGolden) {
  if (!std::filesystem::exists(kSamplePath)) {
    GTEST_SKIP() << "shared sample not found at " << kSamplePath
                 << " (set -DVITRINE_SHARED_DIR); golden cases still cover it";
  }
  std::unordered_map<std::string, std::string> expected;
  for (GoldenCase& c : read_golden()) expected.emplace(std::move(c.in), std::move(c.out));
  std::ifstream file(kSamplePath, std::ios::binary);
  ASSERT_TRUE(file) << "cannot read " << kSamplePath;
  std::string line;
  size_t n_fields = 0;
  size_t n_with_amp = 0;
  while (std::getline(file, line)) {
    if (line.empty()) continue;
    const auto record = nlohmann::json::parse(line);
    for (const char* key : {"title", "content"}) {
      if (!record.contains(key)) continue;
      const std::string text = record.at(key).get<std::string>();
      ++n_fields;
      std::string out;
      const size_t n_replaced = html_unescape(text, out);
      if (text.find('&') == std::string::npos) {
        EXPECT_EQ(n_replaced, 0u);
        EXPECT_EQ(out, text);
        continue;
      }
      ++n_with_amp;
      const auto it = expected.find(text);
      ASSERT_NE(it, expected.end())
          << key << " missing from golden file (regenerate it): " << nlohmann::json(text).dump();
      EXPECT_EQ(out, it->second) << "input: " << nlohmann::json(text).dump();
    }
  }
  EXPECT_GT(n_fields, 1000u);
  EXPECT_GT(n_with_amp, 100u);
}

}  // namespace
}  // namespace vitrine
