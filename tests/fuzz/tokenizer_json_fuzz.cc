// Fuzz target: tokenizer.json through read_tokenizer_json and BpeTokenizer,
// then encoding and decoding sample texts with the result.
//
// Loading documents std::runtime_error for files it refuses; encoding may
// throw std::runtime_error when a file's own regex fails to match (PCRE2
// limits). Anything else escaping, a crash or a sanitizer report is a bug.
#include <stdexcept>

#include "models/tokenizer/bpe_tokenizer.h"
#include "tests/fuzz/tokenizer_fuzz_texts.h"

using namespace vitrine;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::ScratchFile scratch("tokenizer.json");
  const auto& path = scratch.write(fuzz::as_text(data, size));
  std::unique_ptr<models::BpeTokenizer> tokenizer;
  try {
    tokenizer = std::make_unique<models::BpeTokenizer>(models::read_tokenizer_json(path));
  } catch (const std::runtime_error&) {
    return 0;  // refused with a message: the documented outcome
  }
  try {
    fuzz::exercise_tokenizer(*tokenizer);
  } catch (const std::runtime_error& e) {
    // Only the file's own pre-tokenizer regex may fail on well-formed text.
    VITRINE_FUZZ_CHECK(std::string_view(e.what()).find("regex") != std::string_view::npos,
                       "encoding throws only for a failing regex");
  }
  return 0;
}
