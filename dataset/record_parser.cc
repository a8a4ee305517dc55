#include "dataset/record_parser.h"

#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

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

namespace {

namespace od = simdjson::ondemand;

bool is_blank(std::string_view line) {
  for (const char c : line) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  }
  return true;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// RFC 8259's number grammar, on the raw text: any magnitude, nothing converted.
bool is_json_number(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  size_t i = 0;
  const size_t n = s.size();
  if (i < n && s[i] == '-') ++i;
  if (i < n && s[i] == '0') {
    ++i;
  } else if (i < n && s[i] >= '1' && s[i] <= '9') {
    while (i < n && is_digit(s[i])) ++i;
  } else {
    return false;
  }
  if (i < n && s[i] == '.') {
    const size_t start = ++i;
    while (i < n && is_digit(s[i])) ++i;
    if (i == start) return false;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    const size_t start = i;
    while (i < n && is_digit(s[i])) ++i;
    if (i == start) return false;
  }
  return i == n;
}

const char* type_name(od::json_type type) {
  switch (type) {
    case od::json_type::array:
      return "an array";
    case od::json_type::object:
      return "an object";
    case od::json_type::number:
      return "a number";
    case od::json_type::string:
      return "a string";
    case od::json_type::boolean:
      return "a boolean";
    case od::json_type::null:
      return "null";
  }
  return "a value";
}

// Nothing after what was read (3.0's document has no at_end()).
bool at_end(od::document& doc) {
  return doc.current_location().error() == simdjson::OUT_OF_BOUNDS;
}

// Checks that `value` is well-formed JSON without keeping it: strings and
// keys are decoded (so bad escapes are caught), numbers only checked against
// the grammar (so 1e400 or a 60-digit integer in a field vitrine ignores is
// fine), arrays and objects walked. Left unconsumed, a number is skipped by
// the enclosing iteration.
simdjson::error_code validate(od::value value) {
  od::json_type type;
  SIMDJSON_TRY(value.type().get(type));
  switch (type) {
    case od::json_type::array: {
      od::array array;
      SIMDJSON_TRY(value.get_array().get(array));
      for (auto element : array) {
        od::value v;
        SIMDJSON_TRY(std::move(element).get(v));
        SIMDJSON_TRY(validate(v));
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::object: {
      od::object object;
      SIMDJSON_TRY(value.get_object().get(object));
      for (auto result : object) {
        od::field field;
        SIMDJSON_TRY(std::move(result).get(field));
        std::string_view key;
        SIMDJSON_TRY(field.unescaped_key().get(key));
        SIMDJSON_TRY(validate(field.value()));
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::number:
      return is_json_number(value.raw_json_token()) ? simdjson::SUCCESS : simdjson::NUMBER_ERROR;
    case od::json_type::string: {
      std::string_view s;
      return value.get_string().get(s);
    }
    case od::json_type::boolean: {
      bool b;
      return value.get_bool().get(b);
    }
    case od::json_type::null: {
      bool is_null = false;
      SIMDJSON_TRY(value.is_null().get(is_null));
      return is_null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
    }
  }
  return simdjson::TAPE_ERROR;
}

// A line that is JSON but not an object: walked like a value, so a broken
// array is still bad JSON.
simdjson::error_code validate_document(od::document& doc, od::json_type type,
                                       const char* line_end) {
  switch (type) {
    case od::json_type::array: {
      od::array array;
      SIMDJSON_TRY(doc.get_array().get(array));
      for (auto element : array) {
        od::value v;
        SIMDJSON_TRY(std::move(element).get(v));
        SIMDJSON_TRY(validate(v));
      }
      return at_end(doc) ? simdjson::SUCCESS : simdjson::TRAILING_CONTENT;
    }
    case od::json_type::number: {
      // Checked against the grammar, not converted (the token runs up to
      // whatever follows it, which must be nothing).
      std::string_view token;
      SIMDJSON_TRY(doc.raw_json_token().get(token));
      if (token.data() + token.size() != line_end) return simdjson::TRAILING_CONTENT;
      return is_json_number(token) ? simdjson::SUCCESS : simdjson::NUMBER_ERROR;
    }
    case od::json_type::string: {
      std::string_view s;
      SIMDJSON_TRY(doc.get_string().get(s));
      break;
    }
    case od::json_type::boolean: {
      bool b;
      SIMDJSON_TRY(doc.get_bool().get(b));
      break;
    }
    case od::json_type::null: {
      bool is_null = false;
      SIMDJSON_TRY(doc.is_null().get(is_null));
      if (!is_null) return simdjson::N_ATOM_ERROR;
      break;
    }
    case od::json_type::object:
      break;
  }
  return at_end(doc) ? simdjson::SUCCESS : simdjson::TRAILING_CONTENT;
}

// One of the fields vitrine reads: its first value, when it is a string.
struct Slot {
  bool seen = false;
  od::json_type type = od::json_type::null;
  std::string_view text;
};

simdjson::error_code read_slot(od::value value, Slot& slot) {
  slot.seen = true;
  SIMDJSON_TRY(value.type().get(slot.type));
  if (slot.type == od::json_type::string) return value.get_string().get(slot.text);
  return validate(value);
}

// Finds a key repeated within one line: a list while short, a set once long
// (a line may hold any number of keys).
class RepeatedKeys {
 public:
  void clear() {
    keys_.clear();
    key_set_.clear();
  }
  // True when `key` was seen before since clear().
  bool seen(std::string_view key) {
    if (!key_set_.empty()) return !key_set_.insert(key).second;
    if (std::find(keys_.begin(), keys_.end(), key) != keys_.end()) return true;
    keys_.push_back(key);
    if (keys_.size() > 32) key_set_.insert(keys_.begin(), keys_.end());
    return false;
  }

 private:
  std::vector<std::string_view> keys_;
  std::unordered_set<std::string_view> key_set_;
};

// Walks every field of the line's object: the first "title", "content" and
// "uid" are read, everything else (repeats included) only validated. The
// first repeated key goes to record.duplicate_key.
simdjson::error_code read_fields(od::document& doc, RepeatedKeys& keys, Slot& title, Slot& content,
                                 Slot& uid, RawRecord& record) {
  keys.clear();
  od::object object;
  SIMDJSON_TRY(doc.get_object().get(object));
  for (auto result : object) {
    od::field field;
    SIMDJSON_TRY(std::move(result).get(field));
    std::string_view key;
    SIMDJSON_TRY(field.unescaped_key().get(key));
    if (keys.seen(key) && record.duplicate_key.empty()) record.duplicate_key = key;
    Slot* slot = key == "title"     ? &title
                 : key == "content" ? &content
                 : key == "uid"     ? &uid
                                    : nullptr;
    if (slot != nullptr && !slot->seen) {
      SIMDJSON_TRY(read_slot(field.value(), *slot));
    } else {
      SIMDJSON_TRY(validate(field.value()));
    }
  }
  return at_end(doc) ? simdjson::SUCCESS : simdjson::TRAILING_CONTENT;
}

}  // namespace

struct RecordParser::Impl {
  simdjson::ondemand::parser parser;
  std::string repaired;  // padded copy of a line whose UTF-8 was repaired
  RepeatedKeys keys;
};

RecordParser::RecordParser(bool repair_utf8)
    : impl_(std::make_unique<Impl>()), repair_utf8_(repair_utf8) {}
RecordParser::~RecordParser() = default;

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
  size_t capacity = size + LineReader::kPadding;
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
    capacity = impl_->repaired.size();
    record.utf8_repaired = true;
  }
  od::document doc;
  od::json_type type;
  simdjson::error_code error = impl_->parser.iterate(data, size, capacity).get(doc);
  if (!error) error = doc.type().get(type);
  if (!error && type != od::json_type::object) {
    error = validate_document(doc, type, data + size);
    if (!error) {
      detail_ = std::string("the line is ") + type_name(type) + ", not an object";
      return Malformed::kNotObject;
    }
  }
  Slot title, content, uid;
  if (!error) error = read_fields(doc, impl_->keys, title, content, uid, record);
  if (error) {
    detail_ = simdjson::error_message(error);
    return Malformed::kBadJson;
  }
  if (!title.seen) return Malformed::kMissingTitle;
  if (title.type != od::json_type::string) {
    detail_ = std::string("title is ") + type_name(title.type);
    return Malformed::kTitleNotString;
  }
  if (!content.seen) return Malformed::kMissingContent;
  if (content.type != od::json_type::string) {
    detail_ = std::string("content is ") + type_name(content.type);
    return Malformed::kContentNotString;
  }
  record.title = title.text;
  record.content = content.text;
  if (uid.seen && uid.type == od::json_type::string) record.uid = uid.text;
  return Malformed::kNone;
}

}  // namespace vitrine::dataset
