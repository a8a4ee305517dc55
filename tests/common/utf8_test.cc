#include "common/utf8.h"

#include <gtest/gtest.h>

namespace vitrine::utf8 {
namespace {

TEST(Utf8, ValidatesWellFormedText) {
  EXPECT_TRUE(is_valid("plain ascii"));
  EXPECT_TRUE(is_valid("caf\xC3\xA9 \xE2\x80\x99 \xF0\x9F\x98\x80"));
  EXPECT_FALSE(is_valid("\xC0\xAF"));          // overlong
  EXPECT_FALSE(is_valid("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(is_valid("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(is_valid("abc\xE2\x80"));       // truncated at the end
  EXPECT_FALSE(is_valid("\xFF"));
}

TEST(Utf8, RepairReplacesMaximalSubpartsLikePython) {
  // Expected strings from Python: bytes.decode("utf-8", errors="replace").
  std::string out;
  EXPECT_EQ(repair("a\xE2\x82"
                   "b",
                   out),
            1u);  // truncated 3-byte sequence: one U+FFFD
  EXPECT_EQ(out,
            "a\xEF\xBF\xBD"
            "b");
  out.clear();
  EXPECT_EQ(repair("\xFF\xFE", out), 2u);
  EXPECT_EQ(out, "\xEF\xBF\xBD\xEF\xBF\xBD");
  out.clear();
  EXPECT_EQ(repair("\xC0\xAF", out), 2u);  // overlong: each byte replaced
  EXPECT_EQ(out, "\xEF\xBF\xBD\xEF\xBF\xBD");
  out.clear();
  EXPECT_EQ(repair("\xED\xA0\x80x", out), 3u);  // surrogate: three replacements
  out.clear();
  EXPECT_EQ(repair("ok \xC3\xA9", out), 0u);
  EXPECT_EQ(out, "ok \xC3\xA9");
}

TEST(Utf8, CountsCodePointsAndPrefixes) {
  const std::string s = "a\xC3\xA9\xE2\x80\x99\xF0\x9F\x98\x80z";
  EXPECT_EQ(count_code_points(s), 5u);
  EXPECT_EQ(prefix_bytes(s, 2), 3u);
  EXPECT_EQ(prefix_bytes(s, 4), 10u);
  EXPECT_EQ(prefix_bytes(s, 99), s.size());
  size_t len = 0;
  EXPECT_EQ(decode(s, 3, len), U'\u2019');
  EXPECT_EQ(len, 3u);
}

TEST(Utf8, AppendsEncodings) {
  std::string out;
  append(out, U'\u00e9');
  append(out, U'\U0001F600');
  EXPECT_EQ(out, "\xC3\xA9\xF0\x9F\x98\x80");
}

TEST(Utf8, PrintableEscapesWhatWouldDriveATerminal) {
  // A job name that would recolour the screen, set the window title and ring.
  EXPECT_EQ(printable("\x1b[31mred\x1b]0;owned\x07 job"), "\\x1b[31mred\\x1b]0;owned\\x07 job");
  EXPECT_EQ(printable("line\nbreak\rreturn\ttab"), "line\\x0abreak\\x0dreturn\ttab");
  EXPECT_EQ(printable("del\x7f c1\xc2\x9b"), "del\\x7f c1\\x9b");  // U+009B is C1's CSI
  EXPECT_EQ(printable("abc\xe2\x80\xaeuoy"), "abc\\u202euoy");  // right-to-left override
  EXPECT_EQ(printable("bad \xff byte"), "bad \xEF\xBF\xBD byte");  // U+FFFD
  EXPECT_EQ(printable("caf\xC3\xA9 \xF0\x9F\x98\x80"), "caf\xC3\xA9 \xF0\x9F\x98\x80");
  EXPECT_EQ(printable(""), "");
}

}  // namespace
}  // namespace vitrine::utf8
