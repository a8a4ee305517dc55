#include "dataset/record_parser.h"

#include <gtest/gtest.h>

#include "dataset/line_reader.h"

namespace vitrine::dataset {
namespace {

// Parses `line` from a padded buffer, as the reader hands lines out.
Malformed parse(RecordParser& parser, const std::string& line, RawRecord& rec) {
  static std::string buffer;
  buffer = line;
  buffer.append(LineReader::kPadding, '\0');
  return parser.parse(std::string_view(buffer.data(), line.size()), rec);
}

TEST(RecordParser, ReadsTheFieldsOfARealLine) {
  RecordParser parser(true);
  RawRecord rec;
  const std::string line =
      R"({"uid": "0000031909", "title": "Girls Ballet Tutu Neon Pink", "content": "High quality 3 layer ballet tutu. 12 inches in length", "target_ind": [12, 13], "target_rel": [1.0, 1.0]})";
  ASSERT_EQ(parse(parser, line, rec), Malformed::kNone);
  EXPECT_EQ(rec.uid, "0000031909");
  EXPECT_EQ(rec.title, "Girls Ballet Tutu Neon Pink");
  EXPECT_EQ(rec.content, "High quality 3 layer ballet tutu. 12 inches in length");
  EXPECT_FALSE(rec.utf8_repaired);
}

TEST(RecordParser, DecodesEscapesAndAcceptsMissingUidOrCrlf) {
  RecordParser parser(true);
  RawRecord rec;
  ASSERT_EQ(parse(parser,
                  "{\"title\": \"caf\\u00e9 \\\"x\\\"\", \"content\": \"\\ud83d\\ude00\"}\r", rec),
            Malformed::kNone);
  EXPECT_EQ(rec.title, "caf\xC3\xA9 \"x\"");
  EXPECT_EQ(rec.content, "\xF0\x9F\x98\x80");
  EXPECT_TRUE(rec.uid.empty());
}

TEST(RecordParser, NamesEveryKindOfMalformedLine) {
  RecordParser parser(false);
  RawRecord rec;
  EXPECT_EQ(parse(parser, "", rec), Malformed::kBlank);
  EXPECT_EQ(parse(parser, "   \t", rec), Malformed::kBlank);
  EXPECT_EQ(parse(parser, std::string("{\"title\": \"a\0b\", \"content\": \"\"}", 29), rec),
            Malformed::kNulByte);
  EXPECT_EQ(parse(parser, "{\"title\": \"a\xff\", \"content\": \"\"}", rec),
            Malformed::kInvalidUtf8);
  EXPECT_EQ(parse(parser, R"({"uid": "1", "title": "Trunc)", rec), Malformed::kBadJson);
  EXPECT_FALSE(parser.detail().empty());
  EXPECT_EQ(parse(parser, R"({"title": "a", "content": "b"} trailing)", rec), Malformed::kBadJson);
  EXPECT_EQ(parse(parser, R"(["title", "content"])", rec), Malformed::kNotObject);
  EXPECT_EQ(parse(parser, "42", rec), Malformed::kNotObject);
  EXPECT_EQ(parse(parser, R"({"uid": "1", "content": "b"})", rec), Malformed::kMissingTitle);
  EXPECT_EQ(parse(parser, R"({"title": 12345, "content": "b"})", rec), Malformed::kTitleNotString);
  EXPECT_NE(parser.detail().find("number"), std::string::npos);
  EXPECT_EQ(parse(parser, R"({"title": "a"})", rec), Malformed::kMissingContent);
  EXPECT_EQ(parse(parser, R"({"title": "a", "content": null})", rec), Malformed::kContentNotString);
  EXPECT_EQ(malformed_name(Malformed::kTitleNotString), "title_not_a_string");
}

TEST(RecordParser, RepairsInvalidUtf8WhenAsked) {
  RecordParser parser(true);
  RawRecord rec;
  ASSERT_EQ(parse(parser, "{\"title\": \"Caf\xe9 Noir\", \"content\": \"ok\"}", rec),
            Malformed::kNone);
  EXPECT_EQ(rec.title, "Caf\xEF\xBF\xBD Noir");
  EXPECT_TRUE(rec.utf8_repaired);
}

TEST(RecordParser, HugeNumbersInIgnoredFieldsDoNotMakeTheLineBad) {
  RecordParser parser(true);
  RawRecord rec;
  const std::string digits(60, '9');
  const std::vector<std::string> targets = {"[1e400]", "[" + digits + "]", "-1e-400",
                                            "[1, [2, {\"x\": 1E+999}]]",
                                            "[" + digits + ".5e99999, -" + digits + "]"};
  for (const std::string& t : targets) {
    const std::string line = R"({"uid": "u1", "title": "T", "content": "C", "target_ind": )" + t +
                             R"(, "target_rel": [)" + digits + "]}";
    ASSERT_EQ(parse(parser, line, rec), Malformed::kNone) << line << ": " << parser.detail();
    EXPECT_EQ(rec.uid, "u1");
    EXPECT_EQ(rec.title, "T");
    EXPECT_EQ(rec.content, "C");
  }
  // Any field vitrine does not read, and a uid that is not a string (no uid).
  EXPECT_EQ(parse(parser, R"({"uid": 1e400, "title": "T", "content": "C", "price": 1e999})", rec),
            Malformed::kNone);
  EXPECT_TRUE(rec.uid.empty());
  // Where vitrine needs a string, a number is still not one.
  EXPECT_EQ(parse(parser, R"({"title": 1e400, "content": "C"})", rec), Malformed::kTitleNotString);
  EXPECT_EQ(parse(parser, "{\"title\": \"T\", \"content\": " + digits + "}", rec),
            Malformed::kContentNotString);
  EXPECT_EQ(parse(parser, "1e400", rec), Malformed::kNotObject);
  EXPECT_EQ(parse(parser, "[1e400, 2] ", rec), Malformed::kNotObject);
}

TEST(RecordParser, IgnoredFieldsMustStillBeWellFormedJson) {
  RecordParser parser(true);
  RawRecord rec;
  const std::vector<std::string> bad = {
      "[1, 2,, 3]", "[01]",    "[1.]",      "[.5]",         "[1e]",  "[-]",
      "[+1]",       "[tru]",   "[nul]",     "[1 2]",        "[NaN]", "[Infinity]",
      "[0x10]",     "[1}",     "{\"a\" 1}", "{\"a\": 1,}",  "[1, 2", "\"\\q\"",
      "[\"x\": 1]", "[1, 2]]", "{1: 2}",    "[\"\\ud800\"]"};
  for (const std::string& t : bad) {
    const std::string line = R"({"title": "T", "content": "C", "target_ind": )" + t + "}";
    EXPECT_EQ(parse(parser, line, rec), Malformed::kBadJson) << line;
    EXPECT_FALSE(parser.detail().empty()) << line;
  }
  EXPECT_EQ(parse(parser, "[1, 2", rec), Malformed::kBadJson);
  EXPECT_EQ(parse(parser, R"(1{"title": "T", "content": "C"})", rec), Malformed::kBadJson);
  EXPECT_EQ(parse(parser, "1e400 2", rec), Malformed::kBadJson);
  EXPECT_EQ(parse(parser, "01", rec), Malformed::kBadJson);
  EXPECT_EQ(parse(parser, "[1] [2]", rec), Malformed::kBadJson);
  EXPECT_EQ(parse(parser, R"({"title": "T", "content": "C"}})", rec), Malformed::kBadJson);
  EXPECT_EQ(parse(parser, R"({"title": "T", "content": "C"} {})", rec), Malformed::kBadJson);
}

TEST(RecordParser, DuplicateKeysUseTheFirstValueAndAreReported) {
  RecordParser parser(true);
  RawRecord rec;
  ASSERT_EQ(parse(parser, R"({"title": "First", "content": "C", "title": "Second"})", rec),
            Malformed::kNone);
  EXPECT_EQ(rec.title, "First");
  EXPECT_EQ(rec.duplicate_key, "title");
  // Keys are compared decoded.
  ASSERT_EQ(parse(parser, R"({"t\u0069tle": "First", "title": "Second", "content": "C"})", rec),
            Malformed::kNone);
  EXPECT_EQ(rec.title, "First");
  EXPECT_EQ(rec.duplicate_key, "title");
  // Any key counts, the ones vitrine ignores too.
  ASSERT_EQ(
      parse(parser,
            R"({"uid": "a", "target_ind": [1], "title": "T", "target_ind": [2], "content": "C"})",
            rec),
      Malformed::kNone);
  EXPECT_EQ(rec.duplicate_key, "target_ind");
  EXPECT_EQ(rec.uid, "a");
  // First wins even when the first is the wrong type.
  EXPECT_EQ(parse(parser, R"({"title": "T", "content": null, "content": "C"})", rec),
            Malformed::kContentNotString);
  ASSERT_EQ(parse(parser, R"({"title": "T", "content": "C"})", rec), Malformed::kNone);
  EXPECT_TRUE(rec.duplicate_key.empty());
}

}  // namespace
}  // namespace vitrine::dataset
