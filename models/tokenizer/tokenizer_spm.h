// SentencePiece BPE tokenizer (Llama-2, Mistral, TinyLlama, stories260K
// tokenizer.model), encoding and decoding as libsentencepiece does for
// model_type BPE:
//   normalize: optional whitespace cleanup, dummy prefix, " " -> "▁";
//   split into characters (user-defined pieces stay whole);
//   merge adjacent symbols whose concatenation is a piece, highest score first;
//   pieces not in the vocabulary become <0xNN> byte pieces (byte_fallback) or
//   one fused unk.
// Decoding maps "▁" back to spaces, reassembles byte pieces and drops the
// dummy-prefix space of the first piece.
//
// Not a goal: Unigram models, sampling, the nmt_nfkc charsmap (models that
// need it are refused), resegmentation of UNUSED pieces (they never merge).
#pragma once

#include <array>
#include <filesystem>
#include <memory>

#include "models/tokenizer/sentencepiece_model.h"
#include "models/tokenizer/tokenizer.h"
#include "models/tokenizer/tokenizer_vocab.h"

namespace vitrine::models {

class SpmTokenizer final : public Tokenizer {
 public:
  // `source` names the model file in error messages. Throws
  // std::runtime_error for models this encoder cannot reproduce.
  SpmTokenizer(SentencePieceModel model, std::string source);

  static std::unique_ptr<SpmTokenizer> load(const std::filesystem::path& path);

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
  std::string token_bytes(int32_t id, bool at_start) const override;
  int32_t bos_id() const override { return model_.bos_id; }
  std::vector<int32_t> eos_ids() const override;
  int32_t unk_id() const override { return model_.unk_id; }
  size_t vocab_size() const override { return model_.pieces.size(); }
  const std::string& id_to_piece(int32_t id) const override;
  std::optional<int32_t> piece_to_id(std::string_view piece) const override;
  bool is_special(int32_t id) const override;

  // The normalized text that is split and merged ("▁" for spaces).
  std::string normalize(std::string_view text) const;

 private:
  void check_id(int32_t id) const;

  SentencePieceModel model_;
  std::string source_;
  PieceIdMap mergeable_;                   // NORMAL and USER_DEFINED pieces
  PieceIdMap all_pieces_;                  // every piece, for piece_to_id
  std::vector<std::string> user_defined_;  // matched whole, longest first
  std::array<int32_t, 256> byte_ids_{};    // id of <0xNN>, -1 when absent
};

}  // namespace vitrine::models
