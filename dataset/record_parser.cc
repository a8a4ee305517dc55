#include "dataset/record_parser.h"

#include <simdjson.h>

#include <cstring>

#include "common/utf8.h"
#include "dataset/line_reader.h"

namespace vitrine::dataset {

static_assert(LineReader::kPadding >= simdjson::SIMDJSON_PADDING);

std::string_view malformed_name(Malformed reason) {
  switch (reason) {
    case Malformed::kNone:
      return "none";
    case Malformed::kBlank:
      return "blank_line";
    case Malformed::kNulByte:
      return "nul_byte";
    case Malformed::kInvalidUtf8:
      return "invalid_utf8";
    case Malformed::kBadJson:
      return "bad_json";
    case Malformed::kNotObject:
      return "not_an_object";
    case Malformed::kMissingTitle:
      return "missing_title";
    case Malformed::kTitleNotString:
      return "title_not_a_string";
    case Malformed::kMissingContent:
      return "missing_content";
    case Malformed::kContentNotString:
      return "content_not_a_string";
  }
  return "unknown";
}

struct RecordParser::Impl {
  simdjson::dom::parser parser;
  std::string repaired;  // padded copy of a line whose UTF-8 was repaired
};

RecordParser::RecordParser(bool repair_utf8)
    : impl_(std::make_unique<Impl>()), repair_utf8_(repair_utf8) {}
RecordParser::~RecordParser() = default;

namespace {

bool is_blank(std::string_view line) {
  for (const char c : line) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  }
  return true;
}

const char* type_name(simdjson::dom::element_type type) {
  using T = simdjson::dom::element_type;
  switch (type) {
    case T::ARRAY:
      return "an array";
    case T::OBJECT:
      return "an object";
    case T::INT64:
    case T::UINT64:
    case T::DOUBLE:
      return "a number";
    case T::STRING:
      return "a string";
    case T::BOOL:
      return "a boolean";
    case T::NULL_VALUE:
      return "null";
  }
  return "a value";
}

}  // namespace

Malformed RecordParser::parse(std::string_view line, RawRecord& record) {
  record = RawRecord{};
  detail_.clear();
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (is_blank(line)) return Malformed::kBlank;
  if (std::memchr(line.data(), '\0', line.size()) != nullptr) {
    detail_ = "raw NUL byte inside the line";
    return Malformed::kNulByte;
  }
  const char* data = line.data();
  size_t size = line.size();
  if (!simdjson::validate_utf8(data, size)) {
    if (!repair_utf8_) {
      detail_ = "bytes that are not UTF-8";
      return Malformed::kInvalidUtf8;
    }
    impl_->repaired.clear();
    utf8::repair(line, impl_->repaired);
    size = impl_->repaired.size();
    impl_->repaired.append(simdjson::SIMDJSON_PADDING, '\0');
    data = impl_->repaired.data();
    record.utf8_repaired = true;
  }
  simdjson::dom::element doc;
  if (auto error = impl_->parser.parse(data, size, false).get(doc)) {
    detail_ = simdjson::error_message(error);
    return Malformed::kBadJson;
  }
  simdjson::dom::object object;
  if (doc.get_object().get(object)) {
    detail_ = std::string("the line is ") + type_name(doc.type()) + ", not an object";
    return Malformed::kNotObject;
  }
  simdjson::dom::element value;
  if (object["title"].get(value)) return Malformed::kMissingTitle;
  if (value.get_string().get(record.title)) {
    detail_ = std::string("title is ") + type_name(value.type());
    return Malformed::kTitleNotString;
  }
  if (object["content"].get(value)) return Malformed::kMissingContent;
  if (value.get_string().get(record.content)) {
    detail_ = std::string("content is ") + type_name(value.type());
    return Malformed::kContentNotString;
  }
  if (!object["uid"].get(value)) {
    std::string_view uid;
    if (!value.get_string().get(uid)) record.uid = uid;
  }
  return Malformed::kNone;
}

}  // namespace vitrine::dataset
