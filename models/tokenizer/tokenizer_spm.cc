// SentencePiece BPE encoder/decoder; see the header.
#include "models/tokenizer/tokenizer_spm.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "models/tokenizer/bpe_merge.h"

namespace vitrine::models {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";       // "▁" U+2581
constexpr std::string_view kUnknownSurface = " \xE2\x81\x87 ";  // " ⁇ ", libsentencepiece's default

// Byte length of the UTF-8 sequence starting with `lead` (1 for stray bytes,
// so ill-formed input still advances).
size_t utf8_length(unsigned char lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 1;
}

}  // namespace

SpmTokenizer::SpmTokenizer(SentencePieceModel model, std::string source)
    : model_(std::move(model)), source_(std::move(source)) {
  if (model_.model_type != SentencePieceModelType::kBpe)
    throw std::runtime_error(source_ + ": SentencePiece model_type " +
                             std::to_string(static_cast<int>(model_.model_type)) +
                             " is not supported; only BPE (2) is (Llama-2/Mistral style). Use the "
                             "model's tokenizer.json if it has one.");
  if (model_.has_precompiled_charsmap && model_.normalizer_name != "identity")
    throw std::runtime_error(source_ + ": SentencePiece normalizer '" + model_.normalizer_name +
                             "' needs the precompiled charsmap, which is not implemented; use the "
                             "model's tokenizer.json if it has one.");
  byte_ids_.fill(-1);
  for (size_t i = 0; i < model_.pieces.size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    const SentencePiece& p = model_.pieces[i];
    all_pieces_.try_emplace(p.piece, id);
    switch (p.type) {
      case PieceType::kNormal:
        mergeable_.try_emplace(p.piece, id);
        break;
      case PieceType::kUserDefined:
        mergeable_.try_emplace(p.piece, id);
        user_defined_.push_back(p.piece);
        break;
      case PieceType::kByte: {
        unsigned value = 0;
        if (p.piece.size() != 6 || std::sscanf(p.piece.c_str(), "<0x%2X>", &value) != 1 ||
            value > 255)
          throw std::runtime_error(source_ + ": byte piece '" + p.piece + "' (id " +
                                   std::to_string(id) + ") is not of the form <0xNN>");
        byte_ids_[value] = id;
        break;
      }
      default:
        break;
    }
  }
  std::sort(user_defined_.begin(), user_defined_.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
}

std::unique_ptr<SpmTokenizer> SpmTokenizer::load(const std::filesystem::path& path) {
  return std::make_unique<SpmTokenizer>(read_sentencepiece_model(path), path.string());
}

std::string SpmTokenizer::normalize(std::string_view text) const {
  std::string cleaned;
  if (model_.remove_extra_whitespaces) {
    bool pending_space = false;
    for (const char c : text) {
      if (c == ' ') {
        pending_space = !cleaned.empty();
        continue;
      }
      if (pending_space) cleaned.push_back(' ');
      pending_space = false;
      cleaned.push_back(c);
    }
  } else {
    cleaned.assign(text);
  }
  if (cleaned.empty()) return cleaned;
  if (model_.add_dummy_prefix) {
    if (model_.treat_whitespace_as_suffix)
      cleaned.push_back(' ');
    else
      cleaned.insert(cleaned.begin(), ' ');
  }
  if (!model_.escape_whitespaces) return cleaned;
  std::string out;
  out.reserve(cleaned.size() + cleaned.size() / 2);
  for (const char c : cleaned) {
    if (c == ' ')
      out.append(kSpaceSymbol);
    else
      out.push_back(c);
  }
  return out;
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> ids;
  if (add_bos && model_.bos_id >= 0) ids.push_back(model_.bos_id);
  const std::string normalized = normalize(text);
  if (normalized.empty()) return ids;

  // Initial symbols: one per UTF-8 character; user-defined pieces whole.
  std::vector<uint32_t> lengths;
  std::vector<bool> frozen_starts(normalized.size() + 1, false);
  for (size_t pos = 0; pos < normalized.size();) {
    size_t length = 0;
    for (const std::string& u : user_defined_) {
      if (std::string_view(normalized).substr(pos).starts_with(u)) {
        length = u.size();
        frozen_starts[pos] = true;
        break;
      }
    }
    if (length == 0)
      length = std::min(utf8_length(static_cast<unsigned char>(normalized[pos])),
                        normalized.size() - pos);
    lengths.push_back(static_cast<uint32_t>(length));
    pos += length;
  }

  const char* base = normalized.data();
  auto is_frozen = [&](std::string_view s) {
    return frozen_starts[static_cast<size_t>(s.data() - base)];
  };
  const auto symbols = bpe_merge(
      normalized, lengths,
      [&](std::string_view left, std::string_view right) -> std::optional<double> {
        if (is_frozen(left) || is_frozen(right)) return std::nullopt;
        const auto it = mergeable_.find(std::string_view(left.data(), left.size() + right.size()));
        if (it == mergeable_.end()) return std::nullopt;
        return -static_cast<double>(model_.pieces[it->second].score);
      });

  bool previous_unknown = false;
  for (const std::string_view symbol : symbols) {
    const auto it = mergeable_.find(symbol);
    if (it != mergeable_.end()) {
      ids.push_back(it->second);
      previous_unknown = false;
      continue;
    }
    if (model_.byte_fallback) {
      for (const char c : symbol) {
        const int32_t id = byte_ids_[static_cast<unsigned char>(c)];
        ids.push_back(id >= 0 ? id : model_.unk_id);
      }
      continue;
    }
    if (!previous_unknown) ids.push_back(model_.unk_id);  // runs of unknowns fuse into one
    previous_unknown = true;
  }
  return ids;
}

void SpmTokenizer::check_id(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= model_.pieces.size())
    throw std::out_of_range(
        source_ + ": token id " + std::to_string(id) + " is outside the vocabulary of " +
        std::to_string(model_.pieces.size()) + " pieces; ids from another model?");
}

std::string SpmTokenizer::token_bytes(int32_t id, bool at_start) const {
  check_id(id);
  const SentencePiece& p = model_.pieces[static_cast<size_t>(id)];
  switch (p.type) {
    case PieceType::kControl:
    case PieceType::kUnused:
      return {};
    case PieceType::kUnknown:
      return std::string(kUnknownSurface);
    case PieceType::kByte:
      return std::string(1, static_cast<char>(std::stoi(p.piece.substr(3, 2), nullptr, 16)));
    default:
      break;
  }
  std::string_view piece = p.piece;
  if (at_start && model_.add_dummy_prefix && !model_.treat_whitespace_as_suffix &&
      piece.starts_with(kSpaceSymbol))
    piece.remove_prefix(kSpaceSymbol.size());
  std::string out;
  for (size_t pos = 0; pos < piece.size();) {
    if (piece.substr(pos).starts_with(kSpaceSymbol)) {
      out.push_back(' ');
      pos += kSpaceSymbol.size();
    } else {
      out.push_back(piece[pos++]);
    }
  }
  return out;
}

std::vector<int32_t> SpmTokenizer::eos_ids() const {
  if (model_.eos_id < 0) return {};
  return {model_.eos_id};
}

const std::string& SpmTokenizer::id_to_piece(int32_t id) const {
  check_id(id);
  return model_.pieces[static_cast<size_t>(id)].piece;
}

std::optional<int32_t> SpmTokenizer::piece_to_id(std::string_view piece) const {
  const auto it = all_pieces_.find(piece);
  if (it == all_pieces_.end()) return std::nullopt;
  return it->second;
}

bool SpmTokenizer::is_special(int32_t id) const {
  check_id(id);
  const PieceType t = model_.pieces[static_cast<size_t>(id)].type;
  return t == PieceType::kControl || t == PieceType::kUnknown;
}

}  // namespace vitrine::models
