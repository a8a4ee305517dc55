// Hugging Face tokenizers BPE (tokenizer.json, and GPT-2's encoder.json +
// vocab.bpe), in the two flavours Llama-family checkpoints use:
//   byte-level — GPT-2, Llama-3, Qwen2/3: regex pre-split (PCRE2), every
//     byte mapped to a printable code point, merges by rank;
//   metaspace with byte fallback — Mistral/Llama-2 tokenizer.json: "▁" for
//     spaces, characters outside the vocabulary become <0xNN> pieces.
// Added tokens (special or not) are split out of the text first, leftmost
// then longest, and never go through normalization or merges.
//
// Not a goal: WordPiece/Unigram/WordLevel models, BPE dropout, continuing
// subword prefixes, offsets. Unsupported components are refused with an
// error naming the file and the component, never silently ignored.
#pragma once

#include <array>
#include <filesystem>
#include <memory>
#include <unordered_map>

#include "models/tokenizer/pretokenizer.h"
#include "models/tokenizer/tokenizer.h"
#include "models/tokenizer/tokenizer_vocab.h"

namespace vitrine::models {

// One normalization step (applied to text between added tokens).
struct BpeNormalizerStep {
  enum class Kind { kPrepend, kReplace } kind = Kind::kPrepend;
  std::string pattern;  // kReplace: literal text to replace
  std::string content;  // kPrepend: prefix; kReplace: replacement
};

// One pre-tokenization step; each applies to every piece of the previous one.
struct BpePreTokenizerStep {
  enum class Kind { kSplitRegex, kByteLevel, kMetaspace } kind = Kind::kByteLevel;
  std::string pattern;            // kSplitRegex (or kByteLevel with use_regex: GPT-2's)
  bool use_regex = false;         // kByteLevel: split with kGpt2SplitPattern first
  bool add_prefix_space = false;  // kByteLevel / kMetaspace: prepend " " / "▁" to each piece
  bool prepend_first_only =
      false;          // kMetaspace prepend_scheme "first": only at the start of the text
  bool split = true;  // kMetaspace: split before each "▁"
};

struct BpeAddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;  // skipped when decoding
  bool lstrip = false;   // swallow whitespace on the left
  bool rstrip = false;   // swallow whitespace on the right
};

// Everything a BpeTokenizer needs, as read from the files.
struct BpeTokenizerSpec {
  std::string source;                                       // file named in errors
  std::vector<std::string> vocab;                           // index = id (gaps = "")
  std::vector<std::pair<std::string, std::string>> merges;  // rank order
  std::vector<BpeAddedToken> added_tokens;                  // also in vocab
  std::vector<BpeNormalizerStep> normalizers;               // in order
  std::vector<BpePreTokenizerStep> pre_tokenizers;          // in order
  bool byte_level_decode = false;    // decoder maps the byte alphabet back to bytes
  bool metaspace_decode = false;     // decoder maps "▁" to " " and <0xNN> to bytes
  bool strip_leading_space = false;  // decoder drops one leading space of the text
  bool byte_fallback = false;        // unknown characters -> <0xNN> pieces
  bool ignore_merges = false;        // a whole word in the vocabulary is used as is
  bool fuse_unk = false;             // consecutive unknowns -> one unk
  std::string unk_token;             // "" = none (unknown characters are dropped)
  int32_t bos_id = -1;               // -1 = none
  std::vector<int32_t> eos_ids;      // ids that end generation
};

// Reads tokenizer.json. bos/eos come from `config_dir`'s
// tokenizer_config.json, generation_config.json and config.json when present.
BpeTokenizerSpec read_tokenizer_json(const std::filesystem::path& path,
                                     const std::filesystem::path& config_dir = {});
// Reads GPT-2's encoder.json + vocab.bpe (byte-level, <|endoftext|> special).
BpeTokenizerSpec read_gpt2_bpe_files(const std::filesystem::path& encoder_json,
                                     const std::filesystem::path& vocab_bpe);

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeTokenizerSpec spec);

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
  std::string token_bytes(int32_t id, bool at_start) const override;
  int32_t bos_id() const override { return spec_.bos_id; }
  std::vector<int32_t> eos_ids() const override { return spec_.eos_ids; }
  int32_t unk_id() const override { return unk_id_; }
  size_t vocab_size() const override { return spec_.vocab.size(); }
  const std::string& id_to_piece(int32_t id) const override;
  std::optional<int32_t> piece_to_id(std::string_view piece) const override;
  bool is_special(int32_t id) const override;

 private:
  void check_id(int32_t id) const;
  std::string normalize(std::string_view text) const;
  std::vector<std::string> pre_tokenize(std::string_view text, bool at_text_start) const;
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;
  void encode_text(std::string_view text, bool at_text_start, std::vector<int32_t>& ids) const;

  BpeTokenizerSpec spec_;
  PieceIdMap piece_ids_;                                   // vocab piece -> id
  std::unordered_map<uint64_t, int32_t> merge_ranks_;      // (left id << 32 | right id) -> rank
  std::vector<std::unique_ptr<RegexSplitter>> splitters_;  // per pre-tokenizer step (or null)
  std::vector<int32_t> special_ids_;                       // sorted
  std::vector<size_t> added_by_length_;       // indices into added_tokens, longest first
  std::array<bool, 256> added_first_byte_{};  // some added token starts with this byte
  int32_t unk_id_ = -1;
  std::array<int32_t, 256> byte_ids_{};  // id of <0xNN>, -1 when absent
};

}  // namespace vitrine::models
