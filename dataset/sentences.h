// Sentences of a cleaned product description, and the cues the task builder
// reads in them (who a product is for, concrete details, author biographies,
// quoted reviews, signs that the product is a book, film or record).
//
// A sentence ends at '.', '!' or '?' (a run of them, then any closing quotes
// or brackets) followed by whitespace and an uppercase letter, a digit or an
// opening quote/bracket, except after common abbreviations (Mr. Dr. St. vs.
// e.g. i.e. U.S. Vol. ...), "No." before a number, and single initials
// ("J. K. Rowling"). Pieces are returned as views into the input, trimmed,
// in order; text after the last end is a sentence too.
// Not goals: a linguistic sentence tokenizer (no models, no regex; this runs
// on 1.35M descriptions), splitting on ';' or newlines (cleaned text has none).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace vitrine::dataset {

// Clears `out` and fills it with the sentences of `text` (reuses its capacity).
void split_sentences(std::string_view text, std::vector<std::string_view>& out);

// Convenience form of the above.
std::vector<std::string_view> split_sentences(std::string_view text);

// True when `word` (the characters before a '.', without it) is an
// abbreviation or an initial, so the '.' does not end a sentence. `next` is
// the first character after the following whitespace.
bool is_abbreviation(std::string_view word, char next);

// What a sentence says, as bits of sentence_cues(). Heuristics over words,
// tuned on the sample: they decide which questions are asked, never what an
// answer says (answers are always the description's own sentences).
enum SentenceCue : uint32_t {
  // Names who it is for: "for" + up to 3 words + an audience noun ("for young
  // children", not "for his children"), "ages 3-5", "aged three", "Gr. 3-7",
  // "8 and up", "young readers", "anyone who", "fans of", "whole family".
  kCueAudience = 1u << 0,
  // Concrete details: a number other than a year, a measure or material,
  // "includes", "made of", "comes with", a ':' followed by a ',' list.
  kCueDetail = 1u << 1,
  // About a person: "was born", "has written", "lives in", "is the author",
  // a sentence opening with "He"/"She", or with 2-4 capitalized names then
  // "has/died/lives/..." or "is/was a/an/the" ("Casey Watson is a carer.").
  kCueBio = 1u << 2,
  // A review, not a description: opens with a quote mark, with "Praise" /
  // "Reviews" / "Starred", or speaks in the first person ("I love", "I'm").
  kCueBlurb = 1u << 3,
  // A book, film or record: "novel", "author", "chapters", "DVD"...
  kCueWork = 1u << 4,
};

// Bitwise OR of the SentenceCue bits found in `sentence` (ASCII
// case-insensitive word matching, one pass, no allocation). Also usable on a
// title for kCueWork.
uint32_t sentence_cues(std::string_view sentence);

}  // namespace vitrine::dataset
