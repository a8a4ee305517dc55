// The pair-merge loop shared by every BPE tokenizer here.
//
// A word starts as a run of adjacent symbols (byte ranges of one string);
// the adjacent pair with the best priority is merged, then its neighbours
// are re-scored, until no pair can merge. Ties go to the leftmost pair,
// which is what both SentencePiece (priority = -score) and Hugging Face
// tokenizers (priority = merge rank) do. A priority queue with lazy deletion
// keeps this O(n log n) in the word length.
//
// Not a goal: BPE dropout or training.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace vitrine::models {

// Returns the priority of merging two adjacent symbols (lower merges first),
// or nullopt when the pair must not merge.
using BpePairPriority =
    std::function<std::optional<double>(std::string_view left, std::string_view right)>;

// Merges `word`, initially split into symbols of `initial_lengths` bytes
// (they must sum to word.size()), and returns the final symbols as views
// into `word`.
std::vector<std::string_view> bpe_merge(std::string_view word,
                                        std::span<const uint32_t> initial_lengths,
                                        const BpePairPriority& priority);

}  // namespace vitrine::models
