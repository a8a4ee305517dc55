// Aligning a catalogue title with a user's text, word by word: which run of
// the text's words is the title as the user typed it (small words dropped,
// a typo, "mogs" for "Mog's", the subtitle left out), so that the router
// can tell a title ("the mauritius comand") from a question around one
// ("who wrote the mauritius command?"). Words are the index's folded words
// (catalog_internal.h's Words), each flagged when it is a stop word.
//
// A local alignment (Smith-Waterman over words): a matched word scores its
// weight (a stop word less than an identifying one), a typo a little less;
// a text word inside the title that the title lacks, a title word the text
// leaves out and a wrong word cost. The best-scoring run wins, so the words
// around the title in a question stay outside it.
//
// Not goals: reordered words, stemming or synonyms, typos in numbers
// ("1990" is never "1991": they are other products).
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace vitrine::catalog {

struct AlignWord {
  std::string text;   // folded as the index folds it ("mog", "s", "voce")
  bool stop = false;  // is_stop_word(text)
};

struct TitleAlignment {
  int text_begin = 0, text_end = 0;    // the text's words that are the title: [begin, end)
  int title_begin = 0, title_end = 0;  // the title's words they align with: [begin, end)
  int matched = 0;                     // title words matched in the run
  int matched_content = 0;             // of them, identifying (not stop) words
  int typos = 0;                       // of them, matched by one or two edits
  double score = 0;                    // 0: nothing aligned
};

// The best-scoring run; score 0 (and empty ranges) when no word matches.
TitleAlignment align_title(std::span<const AlignWord> text, std::span<const AlignWord> title);

// Whether a typed word is a title word mistyped: both alphabetic, at least
// 4 letters, within one edit (two from 8 letters on). Equal words are not typos.
bool is_typo_of(std::string_view typed, std::string_view word);

}  // namespace vitrine::catalog
