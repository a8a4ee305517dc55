// Fuzz target: one trn.json line through RecordParser::parse, then its title
// and content through TextCleaner::clean, as `vitrine prepare` does.
//
// The first input byte picks the parser's repair_utf8 flag and the cleaner's
// knobs; the rest is the line. Properties: no crash or sanitizer report; a
// parsed record's fields and every cleaned text are valid UTF-8; a cleaned
// description never exceeds max_content_chars code points.
#include <string>
#include <vector>

#include "common/utf8.h"
#include "dataset/line_reader.h"
#include "dataset/record_parser.h"
#include "dataset/text_cleaner.h"
#include "tests/fuzz/fuzz_support.h"

using namespace vitrine;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const std::string_view text = fuzz::as_text(data + 1, size - 1);
  // The parser reads up to kPadding bytes past the line, as LineReader provides.
  std::vector<char> buffer(text.begin(), text.end());
  buffer.resize(text.size() + dataset::LineReader::kPadding, '\0');
  const std::string_view line(buffer.data(), text.size());

  dataset::RecordParser parser(/*repair_utf8=*/(flags & 1) != 0);
  dataset::RawRecord record;
  if (parser.parse(line, record) != dataset::Malformed::kNone) return 0;
  VITRINE_FUZZ_CHECK(utf8::is_valid(record.title), "parsed title is valid UTF-8");
  VITRINE_FUZZ_CHECK(utf8::is_valid(record.content), "parsed content is valid UTF-8");
  VITRINE_FUZZ_CHECK(utf8::is_valid(record.uid), "parsed uid is valid UTF-8");

  dataset::CleanOptions options;
  options.decode_entities = (flags & 2) == 0;
  options.strip_tags = (flags & 4) == 0;
  options.remove_boilerplate = (flags & 8) == 0;
  options.remove_control_chars = (flags & 16) == 0;
  options.collapse_whitespace = (flags & 32) == 0;
  options.max_content_chars = (flags & 64) ? 40 : 5000;
  dataset::TextCleaner cleaner(options);
  std::string title, content;
  cleaner.clean(record.title, /*is_content=*/false, title);
  cleaner.clean(record.content, /*is_content=*/true, content);
  VITRINE_FUZZ_CHECK(utf8::is_valid(title), "cleaned title is valid UTF-8");
  VITRINE_FUZZ_CHECK(utf8::is_valid(content), "cleaned content is valid UTF-8");
  VITRINE_FUZZ_CHECK(utf8::count_code_points(content) <= options.max_content_chars,
                     "cleaned content fits max_content_chars");
  return 0;
}
