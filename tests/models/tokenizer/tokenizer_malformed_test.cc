// Malformed tokenizer files that once crashed or hit undefined behaviour,
// found by the tokenizer fuzz targets (tests/fuzz/): each must now be a
// std::runtime_error naming the file.
#include <gtest/gtest.h>

#include <stdexcept>

#include "models/tokenizer/bpe_tokenizer.h"
#include "tests/support/expect_error.h"
#include "tests/support/temp_dir.h"

namespace vitrine::models {
namespace {

// A tokenizer.json whose vocabulary maps "a" to `id` (JSON text).
std::string tokenizer_json_with_id(const std::string& id) {
  return R"({"model": {"type": "BPE", "vocab": {"a": )" + id + R"(}, "merges": []}})";
}

TEST(TokenizerMalformed, FloatOrHugeVocabularyIdIsAnError) {
  // Found by fuzzing: a float id such as 2.03889e+130 was converted to int64
  // (undefined behaviour); a whole float was silently taken.
  testing::TempDir dir;
  for (const char* id :
       {"2.03889e+130", "1.0", "-1", "10000001", "18446744073709551615", "\"7\""}) {
    testing::write_file(dir / "tokenizer.json", tokenizer_json_with_id(id));
    testing::expect_error([&] { read_tokenizer_json(dir / "tokenizer.json"); },
                          {(dir / "tokenizer.json").string(), "model.vocab['a'] has id"});
  }
  testing::write_file(dir / "tokenizer.json", tokenizer_json_with_id("0"));
  EXPECT_EQ(read_tokenizer_json(dir / "tokenizer.json").vocab.at(0), "a");
}

TEST(TokenizerMalformed, FloatAddedTokenIdIsAnError) {
  testing::TempDir dir;
  testing::write_file(dir / "tokenizer.json",
                      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                          "added_tokens": [{"id": 1e300, "content": "<s>"}]})");
  testing::expect_error([&] { read_tokenizer_json(dir / "tokenizer.json"); },
                        {"added_tokens entry has id 1e+300"});
}

}  // namespace
}  // namespace vitrine::models
