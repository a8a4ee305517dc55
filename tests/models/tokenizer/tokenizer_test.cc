// Tokenizers against llama.cpp's test vectors (../shared/tokenizers) and the
// stories260K reference ids; error handling; streaming decode.
#include "models/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/utf8.h"
#include "models/tokenizer/bpe_tokenizer.h"
#include "models/tokenizer/sentencepiece_model.h"
#include "models/tokenizer/tokenizer_spm.h"
#include "tests/support/temp_dir.h"

namespace vitrine::models {
namespace {

using testing::read_file;
using testing::shared_path;

#define SKIP_WITHOUT(path)            \
  if (!std::filesystem::exists(path)) \
  GTEST_SKIP() << "shared test data absent: " << (path) << " (needs ../shared/tokenizers)"

// inputs.txt: texts separated by "\n__ggml_vocab_test__\n" (the file ends
// with a separator); *.out: one line of space-separated ids per text.
std::vector<std::string> read_inputs() {
  const std::string raw = read_file(shared_path("tokenizers/test-vectors/inputs.txt"));
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t pos = raw.find(separator); pos != std::string::npos;
       pos = raw.find(separator, start)) {
    out.push_back(raw.substr(start, pos - start));
    start = pos + separator.size();
  }
  return out;
}

std::vector<std::vector<int32_t>> read_expected(const std::string& name) {
  std::istringstream in(read_file(shared_path("tokenizers/test-vectors/" + name)));
  std::vector<std::vector<int32_t>> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<int32_t> ids;
    for (int32_t id; fields >> id;) ids.push_back(id);
    out.push_back(std::move(ids));
  }
  return out;
}

std::string join(const std::vector<int32_t>& ids) {
  std::string s;
  for (const int32_t id : ids) {
    s.push_back(' ');
    s.append(std::to_string(id));
  }
  return s;
}

// Encodes every input without specials and checks all 46 against `out_name`.
void expect_vectors(const Tokenizer& tokenizer, const std::string& out_name) {
  const auto inputs = read_inputs();
  const auto expected = read_expected(out_name);
  ASSERT_EQ(inputs.size(), 46u);
  ASSERT_EQ(expected.size(), inputs.size());
  size_t passed = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto ids = tokenizer.encode(inputs[i], false);
    if (ids == expected[i])
      ++passed;
    else
      ADD_FAILURE() << out_name << " input #" << i << " '" << inputs[i] << "'\n  got     "
                    << join(ids) << "\n  expected" << join(expected[i]);
  }
  EXPECT_EQ(passed, inputs.size()) << out_name << ": " << passed << "/" << inputs.size() << " pass";
}

TEST(TokenizerSentencePieceModel, ReadsLlama2Fields) {
  const auto path = shared_path("tokenizers/llama2/tokenizer.model");
  SKIP_WITHOUT(path);
  const SentencePieceModel model = read_sentencepiece_model(path);
  EXPECT_EQ(model.pieces.size(), 32000u);
  EXPECT_EQ(model.model_type, SentencePieceModelType::kBpe);
  EXPECT_TRUE(model.byte_fallback);
  EXPECT_EQ(model.unk_id, 0);
  EXPECT_EQ(model.bos_id, 1);
  EXPECT_EQ(model.eos_id, 2);
  EXPECT_EQ(model.pieces[0].type, PieceType::kUnknown);
  EXPECT_EQ(model.pieces[1].type, PieceType::kControl);
  EXPECT_EQ(model.pieces[3].piece, "<0x00>");
  EXPECT_EQ(model.pieces[3].type, PieceType::kByte);
  EXPECT_TRUE(model.add_dummy_prefix);
  EXPECT_FALSE(model.remove_extra_whitespaces);
}

TEST(TokenizerSentencePieceModel, TruncatedFileIsAClearError) {
  const auto path = shared_path("tokenizers/llama2/tokenizer.model");
  SKIP_WITHOUT(path);
  const std::string bytes = read_file(path);
  try {
    parse_sentencepiece_model(std::string_view(bytes).substr(0, bytes.size() / 2), "cut.model");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cut.model"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_sentencepiece_model("", "empty.model"), std::runtime_error);
}

TEST(TokenizerSpm, LlamaSpmVectors) {
  const auto path = shared_path("tokenizers/llama2/tokenizer.model");
  SKIP_WITHOUT(path);
  expect_vectors(*SpmTokenizer::load(path), "llama-spm.out");
}

TEST(TokenizerSpm, Stories260KReferenceIds) {
  const auto dir = shared_path("models/stories260K-hf");
  SKIP_WITHOUT(dir / "reference.json");
  const auto reference = nlohmann::json::parse(read_file(dir / "reference.json"));
  const auto tokenizer = load_tokenizer(dir);
  ASSERT_FALSE(reference["sequences"].empty());
  for (const auto& seq : reference["sequences"]) {
    const auto expected = seq["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tokenizer->encode(seq["prompt"].get<std::string>(), true), expected) << seq["prompt"];
    auto all = expected;
    for (const int32_t id : seq["greedy_ids"].get<std::vector<int32_t>>()) all.push_back(id);
    EXPECT_EQ(tokenizer->decode(all), seq["greedy_text"].get<std::string>());
  }
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_ids(), std::vector<int32_t>{2});
}

TEST(TokenizerSpm, DecodeRoundTripsAndDropsDummyPrefix) {
  const auto path = shared_path("tokenizers/llama2/tokenizer.model");
  SKIP_WITHOUT(path);
  const auto tokenizer = SpmTokenizer::load(path);
  for (const std::string text :
       {"Hello world", "Hello, y'all! 🦙 ?", "Cửa Việt\n\tx", "ab  cd"}) {
    const auto ids = tokenizer->encode(text, true);
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(tokenizer->decode(ids), text);
  }
  // Like libsentencepiece, leading spaces are dropped until text appears.
  EXPECT_EQ(tokenizer->decode(tokenizer->encode(" Hello", false)), "Hello");
}

TEST(TokenizerBpe, Llama3Vectors) {
  const auto path = shared_path("tokenizers/llama3/tokenizer.json");
  SKIP_WITHOUT(path);
  expect_vectors(BpeTokenizer(read_tokenizer_json(path)), "llama-bpe.out");
}

TEST(TokenizerBpe, Qwen2Vectors) {
  const auto path = shared_path("tokenizers/qwen3/tokenizer.json");
  SKIP_WITHOUT(path);
  expect_vectors(BpeTokenizer(read_tokenizer_json(path)), "qwen2.out");
}

TEST(TokenizerBpe, Gpt2Vectors) {
  const auto dir = shared_path("tokenizers/gpt2");
  SKIP_WITHOUT(dir / "encoder.json");
  expect_vectors(BpeTokenizer(read_gpt2_bpe_files(dir / "encoder.json", dir / "vocab.bpe")),
                 "gpt-2.out");
}

TEST(TokenizerBpe, ByteLevelDecodeRoundTrips) {
  const auto dir = shared_path("tokenizers/llama3");
  SKIP_WITHOUT(dir / "tokenizer.json");
  const auto tokenizer = load_tokenizer(dir);
  for (const auto& text : read_inputs())
    EXPECT_EQ(tokenizer->decode(tokenizer->encode(text, false)), text);
  EXPECT_EQ(tokenizer->bos_id(), 128000);
  const auto ids = tokenizer->encode("<|begin_of_text|>Hi<|eot_id|>", false);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 128000);
  EXPECT_EQ(ids.back(), 128009);
  EXPECT_EQ(tokenizer->decode(ids), "Hi");
}

TEST(TokenizerBpe, LongRunsDoNotExhaustTheRegexEngine) {
  const auto dir = shared_path("tokenizers/llama3");
  SKIP_WITHOUT(dir / "tokenizer.json");
  const auto tokenizer = load_tokenizer(dir);
  for (const std::string& text : {std::string(200000, ' ') + "x", std::string(200000, 'a'),
                                  std::string(100000, '\n') + "?!" + std::string(50000, '3')}) {
    EXPECT_EQ(tokenizer->decode(tokenizer->encode(text, false)), text);
  }
}

TEST(TokenizerBpe, MistralJsonMatchesSentencePieceModel) {
  const auto dir = shared_path("tokenizers/mistral-7b-v0.1");
  SKIP_WITHOUT(dir / "tokenizer.json");
  const auto json_tokenizer = load_tokenizer(dir);
  const auto spm_tokenizer = SpmTokenizer::load(dir / "tokenizer.model");
  EXPECT_EQ(json_tokenizer->bos_id(), 1);
  for (const auto& text : read_inputs()) {
    const auto ids = json_tokenizer->encode(text, true);
    EXPECT_EQ(ids, spm_tokenizer->encode(text, true)) << "input '" << text << "'";
    EXPECT_EQ(json_tokenizer->decode(ids), spm_tokenizer->decode(ids)) << "input '" << text << "'";
  }
}

// A tiny Metaspace tokenizer.json: "first" prepends "▁" only at the start
// of the text, not after an added token; "always" after each.
std::string metaspace_json(const std::string& scheme) {
  return R"({"added_tokens": [{"id": 4, "content": "<x>", "special": true}],
             "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": ")" +
         scheme + R"(", "split": true},
             "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": ")" +
         scheme + R"("},
             "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": false,
                       "vocab": {"<unk>": 0, "▁": 1, "a": 2, "▁a": 3, "<x>": 4},
                       "merges": ["▁ a"]}})";
}

TEST(TokenizerBpe, MetaspacePrependScheme) {
  testing::TempDir dir;
  testing::write_file(dir / "tokenizer.json", metaspace_json("first"));
  const auto first = load_tokenizer(dir.path());
  EXPECT_EQ(first->encode("a<x>a", false), (std::vector<int32_t>{3, 4, 2}));
  EXPECT_EQ(first->decode(std::vector<int32_t>{3, 4, 2}), "aa");
  EXPECT_EQ(first->encode("a b", false), (std::vector<int32_t>{3, 1, 0}));  // "b" is unknown
  testing::write_file(dir / "tokenizer.json", metaspace_json("always"));
  EXPECT_EQ(load_tokenizer(dir.path())->encode("a<x>a", false), (std::vector<int32_t>{3, 4, 3}));
}

TEST(TokenizerBpe, UnknownModelTypeNamesTheFile) {
  testing::TempDir dir;
  testing::write_file(dir / "tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
  try {
    load_tokenizer(dir.path());
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("tokenizer.json"), std::string::npos) << what;
    EXPECT_NE(what.find("WordPiece"), std::string::npos) << what;
  }
  testing::write_file(dir / "tokenizer.json",
                      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                          "pre_tokenizer": {"type": "BertPreTokenizer"}})");
  EXPECT_THROW(load_tokenizer(dir.path()), std::runtime_error);
}

TEST(TokenizerLoad, MissingFilesAreAClearError) {
  testing::TempDir dir;
  try {
    load_tokenizer(dir.path());
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path().string()), std::string::npos) << e.what();
  }
}

TEST(TokenizerStream, NeverSplitsAUtf8Character) {
  const auto path = shared_path("tokenizers/llama2/tokenizer.model");
  SKIP_WITHOUT(path);
  const auto tokenizer = SpmTokenizer::load(path);
  const std::string text = "Llama 🦙 and ∞ — ok";
  const auto ids = tokenizer->encode(text, true);
  // The llama emoji has no piece: four byte-fallback pieces <0xF0><0x9F><0xA6><0x99>.
  const int32_t f0 = *tokenizer->piece_to_id("<0xF0>");
  ASSERT_NE(std::find(ids.begin(), ids.end(), f0), ids.end());
  StreamDecoder stream(*tokenizer);
  std::string streamed;
  for (const int32_t id : ids) {
    const std::string chunk = stream.push(id);
    EXPECT_TRUE(utf8::is_valid(chunk)) << "chunk after id " << id;
    if (id == f0) {
      EXPECT_EQ(chunk, "");
    }
    streamed += chunk;
  }
  streamed += stream.flush();
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(streamed, tokenizer->decode(ids));
}

TEST(TokenizerStream, APrimedStreamDecodesItsNextPieceInContext) {
  const auto path = shared_path("tokenizers/llama2/tokenizer.model");
  SKIP_WITHOUT(path);
  const auto tokenizer = SpmTokenizer::load(path);
  const auto ids32 = tokenizer->encode("Llama and", true);
  const std::vector<int64_t> ids(ids32.begin(), ids32.end());
  const auto last = static_cast<int32_t>(ids.back());  // "▁and"
  StreamDecoder fresh(*tokenizer);
  EXPECT_EQ(fresh.push(last), "and");  // a text's first piece loses its space
  StreamDecoder primed(*tokenizer);
  primed.prime(std::span(ids).first(ids.size() - 1));
  EXPECT_EQ(primed.push(last), " and");
  EXPECT_EQ(primed.flush(), "");
}

TEST(TokenizerStream, IllFormedBytesBecomeReplacementCharacters) {
  const auto path = shared_path("tokenizers/llama2/tokenizer.model");
  SKIP_WITHOUT(path);
  const auto tokenizer = SpmTokenizer::load(path);
  StreamDecoder stream(*tokenizer);
  std::string out = stream.push(*tokenizer->piece_to_id("<0xF0>"));
  EXPECT_EQ(out, "");
  out += stream.push(*tokenizer->piece_to_id("▁a"));  // the character never completes
  out += stream.flush();
  EXPECT_EQ(out, "\xEF\xBF\xBD a");
}

}  // namespace
}  // namespace vitrine::models
