// What the text classifier (text_classifier.h) sees of a text: hashed
// feature slots. Set 1 is the fastText set: lowercased words, word bigrams,
// character n-grams of each word with its boundaries marked, and the last
// character. Set 2 adds what tells a question from a title beyond its
// words:
//   * question and request words ("who", "does", "tell", "explain", "quem",
//     "tem", "fale", ...) with where they stand: first, right after the
//     product's title, elsewhere, last;
//   * the first word, the first two, the last one; a '?' before the end;
//     the number of words; how many of them are capitalised (Title Case is
//     how titles are written, not questions);
//   * with catalogue evidence (TitleEvidence: the bytes of the text that are
//     a known title, found by agents/ in catalog.sqlite), the title is one
//     placeholder word: "who wrote <title>?" looks the same for every
//     product, and a title the user typed is "<title>" alone. The words
//     before and after it and the share of the title typed are slots too.
// Texts without evidence (the catalogue knows no product there) get a slot
// saying so, and their own words. Words outside the title are told apart
// by kind too: listing words ("paperback", "2nd edition", "livro") leave a
// title a title; other words around a title make it a question.
//
// Not goals: tokenising non-Latin scripts into words (their bytes are word
// characters), stemming, anything read from a file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine::models {

struct TextClassifierConfig {
  std::vector<std::string> labels;  // output classes, in order
  int64_t buckets = 1 << 17;        // hashed feature slots: fewer collide more, cost less memory
  int64_t dim = 32;                 // embedding width
  int char_min = 2, char_max = 4;   // character n-gram lengths (of the lowercased text)
  bool word_bigrams = true;         // pairs of adjacent words as features too
  int feature_set = 1;              // 1: words and n-grams; 2: with positions, shape and
                                    // evidence (see above). Recorded with the model.
  bool title_evidence = false;      // set 2 only: trained with catalogue evidence, so callers
                                    // must pass it (TitleEvidence) exactly as in training
};

// Where a known product title sits in the text; found = false when the
// catalogue has none there.
struct TitleEvidence {
  bool found = false;
  size_t begin = 0, end = 0;  // bytes of the text that are the title
  double coverage = 0;        // share of the title's identifying words the text has, in [0, 1]
};

// In set 2 the structure slots (all but words and n-grams) weigh this share
// of the bag together, however many n-grams the words make: a '?' after a
// title or "does" in first place must not drown among 40 n-grams of
// unfamiliar words.
inline constexpr float kStructureShare = 0.5f;

struct TextFeatures {
  std::vector<int64_t> slots;  // in [0, buckets): words and n-grams first, then structure
  size_t n_text = 0;           // slots of words and n-grams
  // Set 2: each slot's weight in the bag (summing to 1, see kStructureShare).
  // Set 1: empty, a plain mean.
  std::vector<float> weights;
};

// Feature slots of `text`, each a hash (XXH3) of a kind and a value, into
// [0, config.buckets); deterministic. `evidence` is read only by set 2 with
// title_evidence; a span outside the text is clamped to it.
TextFeatures text_features(std::string_view text, const TextClassifierConfig& config,
                           const TitleEvidence& evidence = {});

}  // namespace vitrine::models
