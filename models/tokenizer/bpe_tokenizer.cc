// Hugging Face BPE encoder/decoder; see the header. File parsing lives in
// bpe_tokenizer_json.cc.
#include "models/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <stdexcept>

#include "common/strings.h"
#include "common/utf8.h"
#include "models/tokenizer/bpe_merge.h"

namespace vitrine::models {
namespace {

constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // "▁"

size_t utf8_length(unsigned char lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 1;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s.size());
  size_t start = 0;
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, start)) {
    out.append(s, start, pos - start);
    out.append(to);
    start = pos + from.size();
  }
  out.append(s, start, std::string::npos);
  s = std::move(out);
}

// Parses "<0xNN>" into NN, or -1.
int parse_byte_piece(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>') return -1;
  int value = 0;
  for (const char c : piece.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9')
      value |= c - '0';
    else if (c >= 'A' && c <= 'F')
      value |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f')
      value |= c - 'a' + 10;
    else
      return -1;
  }
  return value;
}

}  // namespace

BpeTokenizer::BpeTokenizer(BpeTokenizerSpec spec) : spec_(std::move(spec)) {
  const std::string& source = spec_.source;
  byte_ids_.fill(-1);
  for (size_t i = 0; i < spec_.vocab.size(); ++i) {
    if (spec_.vocab[i].empty()) continue;
    const auto id = static_cast<int32_t>(i);
    piece_ids_.try_emplace(spec_.vocab[i], id);
    const int b = parse_byte_piece(spec_.vocab[i]);
    if (b >= 0) byte_ids_[b] = id;
  }
  for (size_t rank = 0; rank < spec_.merges.size(); ++rank) {
    const auto& [left, right] = spec_.merges[rank];
    const auto l = piece_ids_.find(left);
    const auto r = piece_ids_.find(right);
    if (l == piece_ids_.end() || r == piece_ids_.end() || !piece_ids_.contains(left + right))
      throw std::runtime_error(
          source + ": merge #" + std::to_string(rank) + " '" + left + " " + right +
          "' uses a piece missing from the vocabulary; vocab and merges from different files?");
    const uint64_t key =
        (static_cast<uint64_t>(l->second) << 32) | static_cast<uint32_t>(r->second);
    merge_ranks_.try_emplace(key, static_cast<int32_t>(rank));
  }
  for (size_t i = 0; i < spec_.added_tokens.size(); ++i) {
    const BpeAddedToken& t = spec_.added_tokens[i];
    if (t.id < 0 || t.content.empty()) continue;
    if (static_cast<size_t>(t.id) >= spec_.vocab.size())
      spec_.vocab.resize(static_cast<size_t>(t.id) + 1);
    spec_.vocab[static_cast<size_t>(t.id)] = t.content;
    piece_ids_.insert_or_assign(t.content, t.id);
    if (t.special) special_ids_.push_back(t.id);
    added_by_length_.push_back(i);
    added_first_byte_[static_cast<unsigned char>(t.content[0])] = true;
  }
  std::sort(special_ids_.begin(), special_ids_.end());
  std::stable_sort(added_by_length_.begin(), added_by_length_.end(), [&](size_t a, size_t b) {
    return spec_.added_tokens[a].content.size() > spec_.added_tokens[b].content.size();
  });
  if (!spec_.unk_token.empty()) {
    const auto it = piece_ids_.find(spec_.unk_token);
    if (it == piece_ids_.end())
      throw std::runtime_error(source + ": unk_token '" + spec_.unk_token +
                               "' is not in the vocabulary");
    unk_id_ = it->second;
  }
  for (const BpePreTokenizerStep& step : spec_.pre_tokenizers) {
    if (step.kind == BpePreTokenizerStep::Kind::kSplitRegex)
      splitters_.push_back(std::make_unique<RegexSplitter>(step.pattern, source));
    else if (step.kind == BpePreTokenizerStep::Kind::kByteLevel && step.use_regex)
      splitters_.push_back(std::make_unique<RegexSplitter>(kGpt2SplitPattern, source));
    else
      splitters_.push_back(nullptr);
  }
}

std::string BpeTokenizer::normalize(std::string_view text) const {
  std::string out(text);
  for (const BpeNormalizerStep& step : spec_.normalizers) {
    if (step.kind == BpeNormalizerStep::Kind::kPrepend) {
      if (!out.empty()) out.insert(0, step.content);
    } else {
      replace_all(out, step.pattern, step.content);
    }
  }
  return out;
}

std::vector<std::string> BpeTokenizer::pre_tokenize(std::string_view text,
                                                    bool at_text_start) const {
  std::vector<std::string> pieces{std::string(text)};
  for (size_t s = 0; s < spec_.pre_tokenizers.size(); ++s) {
    const BpePreTokenizerStep& step = spec_.pre_tokenizers[s];
    std::vector<std::string> next;
    for (size_t p = 0; p < pieces.size(); ++p) {
      std::string& piece = pieces[p];
      if (step.kind == BpePreTokenizerStep::Kind::kMetaspace) {
        replace_all(piece, " ", kMetaspace);
        const bool prepend =
            step.add_prefix_space && (!step.prepend_first_only || (at_text_start && p == 0));
        if (prepend && !piece.starts_with(kMetaspace)) piece.insert(0, kMetaspace);
      } else if (step.kind == BpePreTokenizerStep::Kind::kByteLevel && step.add_prefix_space &&
                 !piece.starts_with(' ')) {
        piece.insert(piece.begin(), ' ');
      }
      std::vector<std::string_view> parts;
      if (splitters_[s])
        parts = splitters_[s]->split(piece);
      else if (step.kind == BpePreTokenizerStep::Kind::kMetaspace && step.split)
        parts = split_before_metaspace(piece);
      else
        parts = {piece};
      for (const std::string_view part : parts) {
        if (step.kind == BpePreTokenizerStep::Kind::kByteLevel)
          next.push_back(byte_level_encode(part));
        else
          next.emplace_back(part);
      }
    }
    pieces = std::move(next);
  }
  return pieces;
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  if (spec_.ignore_merges) {
    const auto it = piece_ids_.find(word);
    if (it != piece_ids_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  std::vector<uint32_t> lengths;
  for (size_t pos = 0; pos < word.size();) {
    const size_t length =
        std::min(utf8_length(static_cast<unsigned char>(word[pos])), word.size() - pos);
    lengths.push_back(static_cast<uint32_t>(length));
    pos += length;
  }
  const auto symbols = bpe_merge(
      word, lengths, [&](std::string_view left, std::string_view right) -> std::optional<double> {
        const auto l = piece_ids_.find(left);
        if (l == piece_ids_.end()) return std::nullopt;
        const auto r = piece_ids_.find(right);
        if (r == piece_ids_.end()) return std::nullopt;
        const auto m = merge_ranks_.find((static_cast<uint64_t>(l->second) << 32) |
                                         static_cast<uint32_t>(r->second));
        if (m == merge_ranks_.end()) return std::nullopt;
        return static_cast<double>(m->second);
      });
  bool previous_unknown = false;
  for (const std::string_view symbol : symbols) {
    const auto it = piece_ids_.find(symbol);
    if (it != piece_ids_.end()) {
      ids.push_back(it->second);
      previous_unknown = false;
      continue;
    }
    if (spec_.byte_fallback && std::all_of(symbol.begin(), symbol.end(), [&](char c) {
          return byte_ids_[static_cast<unsigned char>(c)] >= 0;
        })) {
      for (const char c : symbol) ids.push_back(byte_ids_[static_cast<unsigned char>(c)]);
      previous_unknown = false;
      continue;
    }
    if (unk_id_ < 0) continue;  // no unk token: the character is dropped, as tokenizers does
    if (!(spec_.fuse_unk && previous_unknown)) ids.push_back(unk_id_);
    previous_unknown = true;
  }
}

void BpeTokenizer::encode_text(std::string_view text, bool at_text_start,
                               std::vector<int32_t>& ids) const {
  if (text.empty()) return;
  std::string repaired;
  if (!utf8::is_valid(text)) {
    utf8::repair(text, repaired);
    text = repaired;
  }
  for (const std::string& word : pre_tokenize(normalize(text), at_text_start))
    encode_word(word, ids);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> ids;
  if (add_bos && spec_.bos_id >= 0) ids.push_back(spec_.bos_id);
  size_t segment_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!added_first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    const BpeAddedToken* found = nullptr;
    for (const size_t index : added_by_length_) {
      const BpeAddedToken& t = spec_.added_tokens[index];
      if (text.substr(pos).starts_with(t.content)) {
        found = &t;
        break;
      }
    }
    if (found == nullptr) {
      ++pos;
      continue;
    }
    size_t segment_end = pos;
    if (found->lstrip)
      while (segment_end > segment_start && is_space(text[segment_end - 1])) --segment_end;
    encode_text(text.substr(segment_start, segment_end - segment_start), segment_start == 0, ids);
    ids.push_back(found->id);
    pos += found->content.size();
    if (found->rstrip)
      while (pos < text.size() && is_space(text[pos])) ++pos;
    segment_start = pos;
  }
  encode_text(text.substr(segment_start), segment_start == 0, ids);
  return ids;
}

void BpeTokenizer::check_id(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= spec_.vocab.size())
    throw std::out_of_range(spec_.source + ": token id " + std::to_string(id) +
                            " is outside the vocabulary of " + std::to_string(spec_.vocab.size()) +
                            " pieces; ids from another model?");
}

std::string BpeTokenizer::token_bytes(int32_t id, bool at_start) const {
  check_id(id);
  if (is_special(id)) return {};
  const std::string& piece = spec_.vocab[static_cast<size_t>(id)];
  for (const BpeAddedToken& t : spec_.added_tokens)
    if (t.id == id) return piece;
  std::string out;
  if (spec_.byte_level_decode) {
    out = byte_level_decode(piece);
  } else if (spec_.metaspace_decode) {
    const int b = spec_.byte_fallback ? parse_byte_piece(piece) : -1;
    if (b >= 0) return std::string(1, static_cast<char>(b));
    out = piece;
    replace_all(out, kMetaspace, " ");
  } else {
    out = piece;
  }
  if (at_start && spec_.strip_leading_space && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

const std::string& BpeTokenizer::id_to_piece(int32_t id) const {
  check_id(id);
  return spec_.vocab[static_cast<size_t>(id)];
}

std::optional<int32_t> BpeTokenizer::piece_to_id(std::string_view piece) const {
  const auto it = piece_ids_.find(piece);
  if (it == piece_ids_.end()) return std::nullopt;
  return it->second;
}

bool BpeTokenizer::is_special(int32_t id) const {
  check_id(id);
  return std::binary_search(special_ids_.begin(), special_ids_.end(), id);
}

}  // namespace vitrine::models
