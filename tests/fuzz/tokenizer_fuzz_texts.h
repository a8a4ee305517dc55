// Texts the tokenizer fuzz targets encode with every tokenizer they manage to
// load: spaces, digits, punctuation, accents, CJK, emoji, control bytes and
// special-token spellings, so that merges, byte fallback and added-token
// splitting all run.
#pragma once

#include <algorithm>
#include <string_view>

#include "common/utf8.h"
#include "models/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_support.h"

namespace vitrine::fuzz {

inline constexpr std::string_view kTokenizerTexts[] = {
    "",
    " ",
    "Hello world, it's 2024!  Two  spaces\tand\ttabs\n\nnew lines",
    "caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80 \xE2\x96\x81x",
    "<s> </s> <unk> <|im_start|>user\nhi<|im_end|> <|endoftext|>",
    "\x01\x7F \xC2\xA0 a<0x41>b",
};

// Encodes every sample text, decodes the ids back (stream and whole), and
// reads the first pieces: ids an encoder returns must all be valid.
inline void exercise_tokenizer(const models::Tokenizer& tokenizer) {
  for (const std::string_view text : kTokenizerTexts) {
    for (const bool add_bos : {false, true}) {
      const std::vector<int32_t> ids = tokenizer.encode(text, add_bos);
      for (const int32_t id : ids) {
        VITRINE_FUZZ_CHECK(id >= 0 && static_cast<size_t>(id) < tokenizer.vocab_size(),
                           "encode returns ids inside the vocabulary");
      }
      const std::string decoded = tokenizer.decode(ids);
      VITRINE_FUZZ_CHECK(utf8::is_valid(decoded), "decode returns valid UTF-8");
      models::StreamDecoder stream(tokenizer);
      std::string streamed;
      for (const int32_t id : ids) streamed += stream.push(id);
      streamed += stream.flush();
      VITRINE_FUZZ_CHECK(utf8::is_valid(streamed), "stream decoding returns valid UTF-8");
    }
  }
  const size_t n = std::min<size_t>(tokenizer.vocab_size(), 512);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    tokenizer.token_bytes(id, true);
    const std::string& piece = tokenizer.id_to_piece(id);
    VITRINE_FUZZ_CHECK(tokenizer.piece_to_id(piece).has_value() || piece.empty(),
                       "a piece of the vocabulary has an id");
    tokenizer.is_special(id);
  }
}

}  // namespace vitrine::fuzz
