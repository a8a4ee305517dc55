// Fuzz target: tokenizer.model bytes (a SentencePiece ModelProto) through
// parse_sentencepiece_model and SpmTokenizer, then encoding and decoding
// sample texts with the result.
//
// Parsing and the tokenizer's constructor document std::runtime_error for
// malformed or unsupported models; once loaded, encoding and decoding must
// not throw. A crash or a sanitizer report is a bug.
#include <stdexcept>

#include "models/tokenizer/sentencepiece_model.h"
#include "models/tokenizer/tokenizer_spm.h"
#include "tests/fuzz/tokenizer_fuzz_texts.h"

using namespace vitrine;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<models::SpmTokenizer> tokenizer;
  try {
    auto model = models::parse_sentencepiece_model(fuzz::as_text(data, size), "fuzz.model");
    tokenizer = std::make_unique<models::SpmTokenizer>(std::move(model), "fuzz.model");
  } catch (const std::runtime_error&) {
    return 0;  // refused with a message: the documented outcome
  }
  fuzz::exercise_tokenizer(*tokenizer);
  return 0;
}
