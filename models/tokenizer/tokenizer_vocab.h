// Piece -> id maps for tokenizers, looked up by string_view without copying.
//
// Not a goal: anything beyond the map type; each tokenizer owns its vocabulary.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace vitrine::models {

struct PieceHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// Heterogeneous lookup: map.find(std::string_view) works.
using PieceIdMap = std::unordered_map<std::string, int32_t, PieceHash, std::equal_to<>>;

}  // namespace vitrine::models
