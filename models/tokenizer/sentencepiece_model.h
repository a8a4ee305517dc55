// SentencePiece tokenizer.model files, read without libsentencepiece.
//
// A tokenizer.model is a serialized protobuf `sentencepiece.ModelProto`. We
// decode the protobuf wire format ourselves (varints, length-delimited
// fields, fixed32) and keep only the fields a BPE encoder needs: the pieces
// with score and type, the trainer's model type, byte fallback and special
// ids, and the normalizer flags. Unknown fields are skipped, as protobuf does.
//
// Why not libsentencepiece: Debian's build carries protobuf-lite and crashes
// at load time in a process that also loads libprotobuf (libtorch, gRPC).
//
// Not a goal: writing models, the precompiled normalization charsmap
// (nmt_nfkc) — it is read and reported, but not applied — or training.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine::models {

// sentencepiece.ModelProto.SentencePiece.Type
enum class PieceType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct SentencePiece {
  std::string piece;                    // surface text, "▁" for a space
  float score = 0.0f;                   // BPE: merge priority, higher first
  PieceType type = PieceType::kNormal;  // proto default NORMAL
};

// sentencepiece.TrainerSpec.ModelType
enum class SentencePieceModelType : int32_t { kUnigram = 1, kBpe = 2, kWord = 3, kChar = 4 };

struct SentencePieceModel {
  std::vector<SentencePiece> pieces;                                     // index = token id
  SentencePieceModelType model_type = SentencePieceModelType::kUnigram;  // proto default UNIGRAM
  bool byte_fallback = false;               // unknown characters become <0xNN> pieces
  bool treat_whitespace_as_suffix = false;  // "▁" ends a word instead of starting it
  int32_t unk_id = 0;                       // proto default 0
  int32_t bos_id = 1;                       // proto default 1; -1 = none
  int32_t eos_id = 2;                       // proto default 2; -1 = none
  int32_t pad_id = -1;                      // proto default -1 = none
  std::string normalizer_name;              // "identity", "nmt_nfkc", ...
  bool has_precompiled_charsmap = false;    // a non-empty charsmap (not applied here)
  bool add_dummy_prefix = true;             // prepend "▁" to the text
  bool remove_extra_whitespaces = true;     // strip and collapse runs of spaces
  bool escape_whitespaces = true;           // spaces become "▁"
};

// Parses a serialized ModelProto. `source` names the file in error messages.
// Throws std::runtime_error on malformed wire data.
SentencePieceModel parse_sentencepiece_model(std::string_view bytes, const std::string& source);

// Reads and parses `path`. Throws std::runtime_error naming the file.
SentencePieceModel read_sentencepiece_model(const std::filesystem::path& path);

}  // namespace vitrine::models
