#include "catalog/title_alignment.h"

#include <algorithm>
#include <vector>

namespace vitrine::catalog {
namespace {

// Scores (see the header). An identifying word carries the alignment; a
// stop word only extends it, so "the" alone never makes a title.
constexpr double kContentWeight = 1.0;
constexpr double kStopWeight = 0.3;
constexpr double kTypoShare = 0.7;        // a typo scores this share of the word's weight
constexpr double kWrongWord = -0.8;       // a text word in place of a title word
constexpr double kExtraTextWord = -0.8;   // a text word inside the title's run
constexpr double kMissingContent = -0.6;  // an identifying title word left out
constexpr double kMissingStop = -0.1;     // "Lord of Rings": small words are often dropped
constexpr size_t kLongWord = 8;           // from this length on, two edits are a typo

double weight(const AlignWord& word) {
  return word.stop ? kStopWeight : kContentWeight;
}

bool alphabetic(std::string_view word) {
  return std::all_of(word.begin(), word.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u >= 'a' && u <= 'z') || u >= 0x80;
  });
}

// Optimal string alignment distance (an adjacent swap is one edit), or
// limit + 1 as soon as it must exceed `limit`.
int edit_distance(std::string_view a, std::string_view b, int limit) {
  const int n = static_cast<int>(a.size()), m = static_cast<int>(b.size());
  if (std::abs(n - m) > limit) return limit + 1;
  std::vector<int> prev2(static_cast<size_t>(m + 1)), prev(static_cast<size_t>(m + 1)),
      row(static_cast<size_t>(m + 1));
  for (int j = 0; j <= m; ++j) prev[static_cast<size_t>(j)] = j;
  for (int i = 1; i <= n; ++i) {
    row[0] = i;
    int best = row[0];
    for (int j = 1; j <= m; ++j) {
      const auto J = static_cast<size_t>(j);
      const int cost = a[static_cast<size_t>(i - 1)] == b[J - 1] ? 0 : 1;
      int d = std::min({prev[J] + 1, row[J - 1] + 1, prev[J - 1] + cost});
      if (i > 1 && j > 1 && a[static_cast<size_t>(i - 1)] == b[J - 2] &&
          a[static_cast<size_t>(i - 2)] == b[J - 1]) {
        d = std::min(d, prev2[J - 2] + 1);
      }
      row[J] = d;
      best = std::min(best, d);
    }
    if (best > limit) return limit + 1;
    std::swap(prev2, prev);
    std::swap(prev, row);
  }
  return prev[static_cast<size_t>(m)];
}

enum class Move : uint8_t { kStart, kMatch, kJoin, kExtraText, kMissingTitle };

}  // namespace

bool is_typo_of(std::string_view typed, std::string_view word) {
  if (typed == word || typed.size() < 4 || word.size() < 4) return false;
  if (!alphabetic(typed) || !alphabetic(word)) return false;
  const int limit = std::min(typed.size(), word.size()) >= kLongWord ? 2 : 1;
  return edit_distance(typed, word, limit) <= limit;
}

TitleAlignment align_title(std::span<const AlignWord> text, std::span<const AlignWord> title) {
  const size_t n = text.size(), m = title.size();
  if (n == 0 || m == 0) return {};
  const size_t width = m + 1;
  std::vector<double> score((n + 1) * width, 0.0);
  std::vector<Move> move((n + 1) * width, Move::kStart);
  const auto at = [width](size_t i, size_t j) { return i * width + j; };
  double best = 0;
  size_t best_i = 0, best_j = 0;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const AlignWord& typed = text[i - 1];
      const AlignWord& word = title[j - 1];
      double s = 0;
      Move how = Move::kStart;
      const auto consider = [&](double value, Move m_) {
        if (value > s) {
          s = value;
          how = m_;
        }
      };
      // One text word for one title word: equal, a typo or a wrong word.
      double pair = kWrongWord;
      if (typed.text == word.text) {
        pair = weight(word);
      } else if (is_typo_of(typed.text, word.text)) {
        pair = kTypoShare * weight(word);
      }
      consider(score[at(i - 1, j - 1)] + pair, Move::kMatch);
      // One text word for two title words: "mogs" for "mog" "s", "whats".
      if (j >= 2 && typed.text.size() == title[j - 2].text.size() + word.text.size() &&
          typed.text.compare(0, title[j - 2].text.size(), title[j - 2].text) == 0 &&
          typed.text.compare(title[j - 2].text.size(), std::string::npos, word.text) == 0) {
        consider(score[at(i - 1, j - 2)] + weight(title[j - 2]) + weight(word), Move::kJoin);
      }
      consider(score[at(i - 1, j)] + kExtraTextWord, Move::kExtraText);
      consider(score[at(i, j - 1)] + (word.stop ? kMissingStop : kMissingContent),
               Move::kMissingTitle);
      score[at(i, j)] = s;
      move[at(i, j)] = how;
      if (s > best) {
        best = s;
        best_i = i;
        best_j = j;
      }
    }
  }
  TitleAlignment out;
  if (best <= 0) return out;
  out.score = best;
  out.text_end = static_cast<int>(best_i);
  out.title_end = static_cast<int>(best_j);
  size_t i = best_i, j = best_j;
  while (i > 0 && j > 0 && move[at(i, j)] != Move::kStart) {
    switch (move[at(i, j)]) {
      case Move::kMatch: {
        const AlignWord& typed = text[i - 1];
        const AlignWord& word = title[j - 1];
        const bool equal = typed.text == word.text;
        if (equal || is_typo_of(typed.text, word.text)) {
          ++out.matched;
          out.matched_content += !word.stop;
          out.typos += !equal;
        }
        --i;
        --j;
        break;
      }
      case Move::kJoin:
        out.matched += 2;
        out.matched_content += !title[j - 1].stop + !title[j - 2].stop;
        --i;
        j -= 2;
        break;
      case Move::kExtraText:
        --i;
        break;
      case Move::kMissingTitle:
        --j;
        break;
      case Move::kStart:
        break;
    }
  }
  out.text_begin = static_cast<int>(i);
  out.title_begin = static_cast<int>(j);
  // A run never starts or ends on a text word the title lacks: the local
  // alignment drops negative edges, so the ends are matched words.
  return out;
}

}  // namespace vitrine::catalog
