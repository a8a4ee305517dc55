// The tokenizer interface shared by every model family, the loader that picks
// an implementation from a Hugging Face model directory, and a streaming
// decoder for token-by-token output.
//
// Implementations: SentencePiece BPE tokenizer.model (tokenizer_spm.h) and
// Hugging Face tokenizer.json BPE, byte-level or metaspace (bpe_tokenizer.h).
// Tokenizers are immutable after loading and safe to share between threads;
// a StreamDecoder is per-request state.
//
// Not a goal: Unigram/WordPiece models, pair encodings, offsets, padding or
// truncation — generation needs ids in and text out, nothing more.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine::models {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text`, preceded by bos_id() when `add_bos` and the model
  // has one. Special tokens written in the text (e.g. "<|im_start|>") become
  // their ids where the format defines them as added tokens (tokenizer.json);
  // SentencePiece models read such text literally, as libsentencepiece does.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;

  // Text of `ids`, special/control tokens skipped (a SentencePiece unk piece
  // reads " ⁇ ", as in libsentencepiece), byte pieces reassembled;
  // ill-formed UTF-8 is replaced by U+FFFD. Equals the concatenation of
  // token_bytes() over the ids (with `at_start` true until a token produced
  // bytes), repaired.
  std::string decode(std::span<const int32_t> ids) const;

  // Raw bytes that token `id` contributes to decoded text; may be part of a
  // UTF-8 character (byte pieces). `at_start`: no text was produced yet, so a
  // SentencePiece-style leading space is dropped. Unknown ids throw.
  virtual std::string token_bytes(int32_t id, bool at_start) const = 0;

  virtual int32_t bos_id() const = 0;                            // -1 when the model has none
  virtual std::vector<int32_t> eos_ids() const = 0;              // ids that end generation
  virtual int32_t unk_id() const = 0;                            // -1 when the model has none
  virtual size_t vocab_size() const = 0;                         // ids are 0 .. vocab_size()-1
  virtual const std::string& id_to_piece(int32_t id) const = 0;  // throws on bad id
  virtual std::optional<int32_t> piece_to_id(std::string_view piece) const = 0;
  virtual bool is_special(int32_t id) const = 0;  // control / special added token
};

// Loads the tokenizer of a Hugging Face model directory: tokenizer.json when
// present, else tokenizer.model. For tokenizer.json, bos/eos (which the file
// does not carry) come from tokenizer_config.json, generation_config.json and
// config.json; a tokenizer.model carries its own.
// Throws std::runtime_error naming the directory when neither file exists or
// the file is unsupported.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& model_dir);

// Turns a stream of ids into text without ever splitting a UTF-8 character:
// bytes of an incomplete character are held back until it completes (or is
// proven ill-formed, then replaced by U+FFFD).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

  // Feeds ids whose text is known already (a prompt) and returns nothing of
  // it: the ids pushed next decode as they do after them (a first piece keeps
  // its leading space). An unfinished character at the end is dropped.
  void prime(std::span<const int64_t> ids);
  // Text that became complete with `id` (possibly empty).
  std::string push(int32_t id);
  // Whatever is held back, repaired; resets the decoder for a new stream.
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;  // bytes of an unfinished UTF-8 character
  bool at_start_ = true;
};

}  // namespace vitrine::models
