#include "dataset/language.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>

namespace vitrine::dataset {
namespace {

constexpr int kNumLanguages = 6;
constexpr std::array<std::string_view, kNumLanguages> kCodes = {"en", "pt", "es", "fr", "de", "it"};

// Stop words per language, in kCodes order. Words shared between languages
// vote for each; "a" is left out (frequent in five of the six).
const WordLexicon& stop_words() {
  static const auto* table = [] {
    auto* t = new WordLexicon();
    auto add = [t](int lang, std::initializer_list<std::string_view> words) {
      for (std::string_view w : words) t->add(w, 1u << lang);
    };
    add(0, {"the",  "and",  "of",  "to",    "is",   "in",    "that",  "with", "for", "this",
            "it",   "was",  "are", "as",    "by",   "his",   "her",   "from", "you", "be",
            "has",  "have", "an",  "on",    "at",   "which", "their", "will", "who", "or",
            "not",  "but",  "its", "they",  "he",   "she",   "we",    "your", "all", "been",
            "were", "more", "can", "about", "into", "how",   "when",  "what"});
    add(1, {"de",   "que",  "não",  "é",    "o",    "os",    "as",  "da",   "do",  "das",  "dos",
            "um",   "uma",  "para", "com",  "em",   "no",    "na",  "nos",  "por", "mais", "se",
            "ao",   "à",    "são",  "como", "mas",  "foi",   "ele", "ela",  "seu", "sua",  "também",
            "pelo", "pela", "este", "esta", "isso", "muito", "e",   "você", "está"});
    add(2, {"de",      "que", "el",  "la",   "los",  "las",  "y",    "en",   "un",
            "una",     "por", "con", "no",   "es",   "se",   "del",  "al",   "lo",
            "para",    "su",  "sus", "más",  "como", "pero", "este", "esta", "muy",
            "también", "ya",  "fue", "está", "hay",  "son",  "le"});
    add(3, {"de",   "la",   "le",   "les",  "et",    "des", "un",  "une", "du",   "en",
            "est",  "que",  "qui",  "dans", "pour",  "pas", "sur", "au",  "avec", "ce",
            "il",   "elle", "sont", "par",  "plus",  "ne",  "se",  "son", "sa",   "ses",
            "mais", "nous", "vous", "aux",  "cette", "été", "très"});
    add(4, {"der", "die", "das",  "und", "ist", "nicht", "zu",   "den",   "von",    "mit",  "sich",
            "des", "auf", "für",  "im",  "dem", "ein",   "eine", "einen", "es",     "auch", "als",
            "an",  "er",  "sie",  "wie", "bei", "oder",  "aus",  "wird",  "werden", "sind", "nach",
            "wir", "ich", "dass", "zum", "zur", "über",  "noch", "in"});
    add(5, {"di",    "il",     "che",    "e",   "la",    "le",  "per",  "un",    "una",
            "non",   "del",    "della",  "dei", "delle", "è",   "sono", "con",   "nel",
            "nella", "si",     "gli",    "lo",  "da",    "al",  "alla", "anche", "ma",
            "più",   "questo", "questa", "ha",  "suo",   "sua", "in"});
    return t;
  }();
  return *table;
}

constexpr bool is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

struct Vote {
  std::array<int, kNumLanguages> votes{};
  int words = 0;
};

// Scans `text` until `vote.words` reaches kMaxWordsScanned.
void scan(std::string_view text, const WordLexicon& table, Vote& vote) {
  const size_t n = text.size();
  size_t i = 0;
  while (i < n && vote.words < kMaxWordsScanned) {
    while (i < n && !is_word_byte(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= n) break;
    size_t j = i;
    while (j < n && is_word_byte(static_cast<unsigned char>(text[j]))) ++j;
    ++vote.words;
    const uint32_t langs = table.find(text.substr(i, j - i));
    if (langs != 0) {
      for (int l = 0; l < kNumLanguages; ++l) vote.votes[l] += (langs >> l) & 1;
    }
    i = j;
  }
}

}  // namespace

void WordLexicon::add(std::string_view lower_word, uint32_t flags) {
  if (lower_word.empty() || lower_word.size() > kMaxWordBytes || size_ * 2 >= kSlots) {
    throw std::logic_error("WordLexicon: word empty, over 16 bytes, or table full");
  }
  uint32_t h = kFnvBasis;
  for (char c : lower_word) h = (h ^ static_cast<unsigned char>(c)) * kFnvPrime;
  Slot& slot = slots_[probe(lower_word, h)];
  if (slot.size == 0) ++size_;
  std::copy(lower_word.begin(), lower_word.end(), slot.bytes.begin());
  slot.size = static_cast<uint8_t>(lower_word.size());
  slot.flags |= flags;
}

size_t WordLexicon::probe(std::string_view lower_word, uint32_t h) const {
  for (size_t i = h & (kSlots - 1);; i = (i + 1) & (kSlots - 1)) {
    const Slot& slot = slots_[i];
    if (slot.size == 0 || (slot.size == lower_word.size() &&
                           std::equal(lower_word.begin(), lower_word.end(), slot.bytes.begin()))) {
      return i;
    }
  }
}

std::string_view detect_language(std::string_view title, std::string_view content) {
  const auto& table = stop_words();
  Vote vote;
  scan(title, table, vote);
  scan(content, table, vote);
  if (vote.words < kMinWords) return "unknown";
  int best = 0;
  for (int l = 1; l < kNumLanguages; ++l) {
    if (vote.votes[l] > vote.votes[best]) best = l;
  }
  int second = 0;
  for (int l = 0; l < kNumLanguages; ++l) {
    if (l != best) second = std::max(second, vote.votes[l]);
  }
  const int top = vote.votes[best];
  if (top < kMinVotes || top <= second || 2 * top < 3 * second) return "unknown";
  return kCodes[best];
}

}  // namespace vitrine::dataset
