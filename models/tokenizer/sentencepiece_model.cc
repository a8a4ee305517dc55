// Protobuf wire-format reader for sentencepiece.ModelProto; see the header.
#include "models/tokenizer/sentencepiece_model.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace vitrine::models {
namespace {

// Field numbers of sentencepiece_model.proto.
constexpr uint32_t kModelPieces = 1;
constexpr uint32_t kModelTrainerSpec = 2;
constexpr uint32_t kModelNormalizerSpec = 3;
constexpr uint32_t kPiecePiece = 1;
constexpr uint32_t kPieceScore = 2;
constexpr uint32_t kPieceType = 3;
constexpr uint32_t kTrainerModelType = 3;
constexpr uint32_t kTrainerTreatWhitespaceAsSuffix = 24;
constexpr uint32_t kTrainerByteFallback = 35;
constexpr uint32_t kTrainerUnkId = 40;
constexpr uint32_t kTrainerBosId = 41;
constexpr uint32_t kTrainerEosId = 42;
constexpr uint32_t kTrainerPadId = 43;
constexpr uint32_t kNormalizerName = 1;
constexpr uint32_t kNormalizerCharsmap = 2;
constexpr uint32_t kNormalizerAddDummyPrefix = 3;
constexpr uint32_t kNormalizerRemoveExtraWhitespaces = 4;
constexpr uint32_t kNormalizerEscapeWhitespaces = 5;

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// One decoded field: its number, wire type and value (integer or bytes).
struct Field {
  uint32_t number = 0;
  uint32_t wire_type = 0;
  uint64_t integer = 0;    // kVarint, kFixed64, kFixed32
  std::string_view bytes;  // kLengthDelimited
};

// Sequential reader over one message's bytes.
class WireReader {
 public:
  WireReader(std::string_view data, const std::string& source, const char* message)
      : data_(data), source_(source), message_(message) {}

  bool done() const { return pos_ >= data_.size(); }

  Field next() {
    Field f;
    const uint64_t key = varint();
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire_type = static_cast<uint32_t>(key & 7);
    if (f.number == 0) fail("field number 0");
    switch (f.wire_type) {
      case kVarint:
        f.integer = varint();
        break;
      case kFixed64:
        f.integer = fixed(8);
        break;
      case kFixed32:
        f.integer = fixed(4);
        break;
      case kLengthDelimited: {
        const uint64_t n = varint();
        if (n > data_.size() - pos_) fail("length-delimited field runs past the end");
        f.bytes = data_.substr(pos_, n);
        pos_ += n;
        break;
      }
      default:
        fail("unsupported wire type " + std::to_string(f.wire_type));
    }
    return f;
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(source_ + ": malformed SentencePiece model (" + message_ +
                             " at byte " + std::to_string(pos_) + "): " + what +
                             "; is this really a sentencepiece tokenizer.model, complete and not a "
                             "Git LFS pointer?");
  }

 private:
  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (done()) fail("truncated varint");
      const auto byte = static_cast<uint8_t>(data_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    fail("varint longer than 10 bytes");
  }

  uint64_t fixed(size_t n) {
    if (data_.size() - pos_ < n) fail("truncated fixed-width field");
    uint64_t value = 0;
    for (size_t i = 0; i < n; ++i)
      value |= static_cast<uint64_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
    pos_ += n;
    return value;
  }

  std::string_view data_;
  const std::string& source_;
  std::string message_;
  size_t pos_ = 0;
};

float as_float(const Field& f) {
  const auto bits = static_cast<uint32_t>(f.integer);
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// proto int32 fields are varints of the sign-extended 64-bit value.
int32_t as_int32(const Field& f) {
  return static_cast<int32_t>(static_cast<int64_t>(f.integer));
}

void expect_wire_type(const WireReader& r, const Field& f, uint32_t wire_type) {
  if (f.wire_type != wire_type)
    r.fail("field " + std::to_string(f.number) + " has wire type " + std::to_string(f.wire_type) +
           ", expected " + std::to_string(wire_type));
}

SentencePiece parse_piece(std::string_view bytes, const std::string& source) {
  SentencePiece piece;
  WireReader r(bytes, source, "SentencePiece");
  while (!r.done()) {
    const Field f = r.next();
    if (f.number == kPiecePiece) {
      expect_wire_type(r, f, kLengthDelimited);
      piece.piece = std::string(f.bytes);
    } else if (f.number == kPieceScore) {
      expect_wire_type(r, f, kFixed32);
      piece.score = as_float(f);
    } else if (f.number == kPieceType) {
      expect_wire_type(r, f, kVarint);
      const int32_t type = as_int32(f);
      if (type < 1 || type > 6) r.fail("unknown piece type " + std::to_string(type));
      piece.type = static_cast<PieceType>(type);
    }
  }
  return piece;
}

void parse_trainer_spec(std::string_view bytes, const std::string& source,
                        SentencePieceModel& model) {
  WireReader r(bytes, source, "TrainerSpec");
  while (!r.done()) {
    const Field f = r.next();
    switch (f.number) {
      case kTrainerModelType:
        expect_wire_type(r, f, kVarint);
        model.model_type = static_cast<SentencePieceModelType>(as_int32(f));
        break;
      case kTrainerTreatWhitespaceAsSuffix:
        expect_wire_type(r, f, kVarint);
        model.treat_whitespace_as_suffix = f.integer != 0;
        break;
      case kTrainerByteFallback:
        expect_wire_type(r, f, kVarint);
        model.byte_fallback = f.integer != 0;
        break;
      case kTrainerUnkId:
        expect_wire_type(r, f, kVarint);
        model.unk_id = as_int32(f);
        break;
      case kTrainerBosId:
        expect_wire_type(r, f, kVarint);
        model.bos_id = as_int32(f);
        break;
      case kTrainerEosId:
        expect_wire_type(r, f, kVarint);
        model.eos_id = as_int32(f);
        break;
      case kTrainerPadId:
        expect_wire_type(r, f, kVarint);
        model.pad_id = as_int32(f);
        break;
      default:
        break;
    }
  }
}

void parse_normalizer_spec(std::string_view bytes, const std::string& source,
                           SentencePieceModel& model) {
  WireReader r(bytes, source, "NormalizerSpec");
  while (!r.done()) {
    const Field f = r.next();
    switch (f.number) {
      case kNormalizerName:
        expect_wire_type(r, f, kLengthDelimited);
        model.normalizer_name = std::string(f.bytes);
        break;
      case kNormalizerCharsmap:
        expect_wire_type(r, f, kLengthDelimited);
        model.has_precompiled_charsmap = !f.bytes.empty();
        break;
      case kNormalizerAddDummyPrefix:
        expect_wire_type(r, f, kVarint);
        model.add_dummy_prefix = f.integer != 0;
        break;
      case kNormalizerRemoveExtraWhitespaces:
        expect_wire_type(r, f, kVarint);
        model.remove_extra_whitespaces = f.integer != 0;
        break;
      case kNormalizerEscapeWhitespaces:
        expect_wire_type(r, f, kVarint);
        model.escape_whitespaces = f.integer != 0;
        break;
      default:
        break;
    }
  }
}

}  // namespace

SentencePieceModel parse_sentencepiece_model(std::string_view bytes, const std::string& source) {
  SentencePieceModel model;
  WireReader r(bytes, source, "ModelProto");
  while (!r.done()) {
    const Field f = r.next();
    if (f.number == kModelPieces) {
      expect_wire_type(r, f, kLengthDelimited);
      model.pieces.push_back(parse_piece(f.bytes, source));
    } else if (f.number == kModelTrainerSpec) {
      expect_wire_type(r, f, kLengthDelimited);
      parse_trainer_spec(f.bytes, source, model);
    } else if (f.number == kModelNormalizerSpec) {
      expect_wire_type(r, f, kLengthDelimited);
      parse_normalizer_spec(f.bytes, source, model);
    }
  }
  if (model.pieces.empty())
    throw std::runtime_error(source +
                             ": SentencePiece model has no pieces; is this a tokenizer.model?");
  const auto n = static_cast<int32_t>(model.pieces.size());
  for (const auto& [name, id] :
       {std::pair{"unk_id", model.unk_id}, std::pair{"bos_id", model.bos_id},
        std::pair{"eos_id", model.eos_id}, std::pair{"pad_id", model.pad_id}}) {
    if (id >= n)
      throw std::runtime_error(source + ": trainer_spec." + name + " = " + std::to_string(id) +
                               " is outside the vocabulary of " + std::to_string(n) + " pieces");
  }
  return model;
}

SentencePieceModel read_sentencepiece_model(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot open SentencePiece model");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_sentencepiece_model(ss.str(), path.string());
}

}  // namespace vitrine::models
