// Language of a product, guessed from its title and description by a
// stop-word vote: cheap enough for 1.35M products (a few hundred ns each).
//
// Rule: the first kMaxWordsScanned words (title first, then description;
// a word is a run of letters, digits or non-ASCII bytes, ASCII-lowercased)
// are looked up in short lists of very frequent function words of English,
// Portuguese, Spanish, French, German and Italian; a word in several lists
// ("de", "la", "in") votes for each. The language with the most votes wins
// when it has at least kMinVotes and at least 1.5 times (and strictly more
// than) the runner-up's; otherwise, or with fewer than kMinWords words, the
// answer is "unknown". Short product blurbs ("High quality 3 layer tutu.")
// often stay "unknown": that is the honest answer.
// Also here: WordLexicon, the allocation-free word list behind the vote (and
// behind the cue words of sentences.h).
// Not goals: other languages, mixed-language detection, n-gram models,
// confidence scores.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace vitrine::dataset {

// A small fixed word list with flag bits per word, matched ASCII
// case-insensitively without allocation: the stop words here, the cue words
// of sentences.h. Open addressing over lowercased words, FNV-1a computed
// while lowercasing. Fill once (add), then read from any thread (find).
class WordLexicon {
 public:
  static constexpr size_t kMaxWordBytes = 16;  // longer words are never found

  // Adds `lower_word` (lowercase, 1-16 bytes) with `flags` (OR-ed into any
  // earlier ones). Throws std::logic_error when the word or the table does not fit.
  void add(std::string_view lower_word, uint32_t flags);

  // Flags of `word` in any ASCII case; 0 when absent.
  uint32_t find(std::string_view word) const {
    if (word.empty() || word.size() > kMaxWordBytes) return 0;
    std::array<char, kMaxWordBytes> lower;
    uint32_t h = kFnvBasis;
    for (size_t i = 0; i < word.size(); ++i) {
      const char c = word[i];
      lower[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      h = (h ^ static_cast<unsigned char>(lower[i])) * kFnvPrime;
    }
    return slots_[probe(std::string_view(lower.data(), word.size()), h)].flags;
  }

 private:
  static constexpr size_t kSlots = 1024;  // power of two; at most half filled
  static constexpr uint32_t kFnvBasis = 2166136261u;
  static constexpr uint32_t kFnvPrime = 16777619u;
  struct Slot {
    std::array<char, kMaxWordBytes> bytes{};
    uint8_t size = 0;  // 0 = empty
    uint32_t flags = 0;
  };

  // Index of the slot holding `lower_word`, or of the empty slot where it would go.
  size_t probe(std::string_view lower_word, uint32_t h) const;

  std::array<Slot, kSlots> slots_{};
  size_t size_ = 0;
};

inline constexpr int kMaxWordsScanned =
    60;                              // words read per product: more is slower, barely more accurate
inline constexpr int kMinWords = 4;  // fewer words than this: "unknown"
inline constexpr int kMinVotes = 2;  // a winner needs at least this many stop-word hits

// "en", "pt", "es", "fr", "de", "it" or "unknown" (static strings).
std::string_view detect_language(std::string_view title, std::string_view content);

}  // namespace vitrine::dataset
