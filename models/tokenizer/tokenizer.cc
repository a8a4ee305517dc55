// Tokenizer::decode, load_tokenizer and StreamDecoder; see the header.
#include "models/tokenizer/tokenizer.h"

#include <stdexcept>

#include "common/utf8.h"
#include "models/tokenizer/bpe_tokenizer.h"
#include "models/tokenizer/tokenizer_spm.h"

namespace vitrine::models {
namespace {

// Bytes at the end of `s` that begin a UTF-8 character still missing
// continuation bytes (0 when `s` ends on a character boundary).
size_t incomplete_tail(std::string_view s) {
  const size_t n = s.size();
  for (size_t k = 1; k <= 3 && k <= n; ++k) {
    const auto c = static_cast<unsigned char>(s[n - k]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    size_t needed = 1;
    if (c >= 0xC2 && c <= 0xDF)
      needed = 2;
    else if (c >= 0xE0 && c <= 0xEF)
      needed = 3;
    else if (c >= 0xF0 && c <= 0xF4)
      needed = 4;
    return needed > k ? k : 0;
  }
  return 0;
}

}  // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string raw;
  for (const int32_t id : ids) raw += token_bytes(id, raw.empty());
  std::string out;
  utf8::repair(raw, out);
  return out;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& model_dir) {
  const auto json_path = model_dir / "tokenizer.json";
  if (std::filesystem::exists(json_path))
    return std::make_unique<BpeTokenizer>(read_tokenizer_json(json_path, model_dir));
  const auto model_path = model_dir / "tokenizer.model";
  if (std::filesystem::exists(model_path)) return SpmTokenizer::load(model_path);
  throw std::runtime_error(
      model_dir.string() +
      ": no tokenizer.json or tokenizer.model; is this a Hugging Face model directory?");
}

std::string StreamDecoder::push(int32_t id) {
  const std::string bytes = tokenizer_.token_bytes(id, at_start_);
  if (bytes.empty()) return {};
  at_start_ = false;
  pending_ += bytes;
  const size_t hold = incomplete_tail(pending_);
  std::string out;
  utf8::repair(std::string_view(pending_).substr(0, pending_.size() - hold), out);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

void StreamDecoder::prime(std::span<const int64_t> ids) {
  for (const int64_t id : ids) push(static_cast<int32_t>(id));
  pending_.clear();
}

std::string StreamDecoder::flush() {
  std::string out;
  utf8::repair(pending_, out);
  pending_.clear();
  at_start_ = true;
  return out;
}

}  // namespace vitrine::models
