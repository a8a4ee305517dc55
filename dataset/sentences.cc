#include "dataset/sentences.h"

#include <algorithm>
#include <array>
#include <initializer_list>
#include <string>

#include "common/strings.h"
#include "dataset/language.h"

namespace vitrine::dataset {
namespace {

constexpr bool is_upper(char c) {
  return c >= 'A' && c <= 'Z';
}
constexpr bool is_lower(char c) {
  return c >= 'a' && c <= 'z';
}
constexpr bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
constexpr bool is_alpha(char c) {
  return is_upper(c) || is_lower(c);
}
constexpr bool is_terminal(char c) {
  return c == '.' || c == '!' || c == '?';
}

bool starts_with(std::string_view s, size_t pos, std::string_view prefix) {
  return s.size() - pos >= prefix.size() && s.compare(pos, prefix.size(), prefix) == 0;
}

// Length in bytes of a closing quote or bracket at text[pos], or 0.
size_t closing_mark(std::string_view text, size_t pos) {
  const char c = text[pos];
  if (c == '"' || c == '\'' || c == ')' || c == ']') return 1;
  if (starts_with(text, pos, "\xE2\x80\x99") || starts_with(text, pos, "\xE2\x80\x9D"))
    return 3;                                        // ’ ”
  if (starts_with(text, pos, "\xC2\xBB")) return 2;  // »
  return 0;
}

// Length in bytes of an opening quote or bracket at text[pos], or 0.
size_t opening_mark(std::string_view text, size_t pos) {
  const char c = text[pos];
  if (c == '"' || c == '\'' || c == '(' || c == '[') return 1;
  if (starts_with(text, pos, "\xE2\x80\x98") || starts_with(text, pos, "\xE2\x80\x9C"))
    return 3;                                        // ‘ “
  if (starts_with(text, pos, "\xC2\xAB")) return 2;  // «
  return 0;
}

// An uppercase letter (ASCII or Latin-1 À-Þ), a digit or an opening mark.
bool starts_sentence(std::string_view text, size_t pos) {
  const char c = text[pos];
  if (is_upper(c) || is_digit(c) || opening_mark(text, pos) > 0) return true;
  if (static_cast<unsigned char>(c) == 0xC3 && pos + 1 < text.size()) {
    const auto next = static_cast<unsigned char>(text[pos + 1]);
    return next >= 0x80 && next <= 0x9E && next != 0x97;  // À..Þ without ×
  }
  return false;
}

// Abbreviations after which '.' never ends a sentence (compared as written).
constexpr std::string_view kAbbreviations[] = {
    "Mr",   "Mrs",  "Ms",   "Dr",  "St", "Jr",  "Sr",  "Prof",   "Rev", "Mt",     "Gen",
    "Col",  "Lt",   "Capt", "Sgt", "Fr", "Gov", "Sen", "Rep",    "Hon", "Messrs", "Mme",
    "Mlle", "Sra",  "Dra",  "vs",  "Vs", "cf",  "ca",  "approx", "Ave", "Vol",    "Vols",
    "vol",  "vols", "Nos",  "nos", "pp", "Op",  "op",  "Fig",    "fig", "Ch",     "Bk"};

}  // namespace

bool is_abbreviation(std::string_view word, char next) {
  while (!word.empty() && opening_mark(word, 0) > 0) word.remove_prefix(opening_mark(word, 0));
  if (word.empty()) return false;
  if (word.size() == 1) return is_alpha(word[0]);  // an initial: "J. K. Rowling", "p. 12"
  if ((word == "No" || word == "no" || word == "Gr" || word == "gr") && is_digit(next))
    return true;  // "No. 5", "Gr. 3-7"
  for (std::string_view a : kAbbreviations) {
    if (word == a) return true;
  }
  // Dotted letters: "U.S", "e.g", "i.e", "D.C", "Ph.D" (segments of 1-2 letters).
  if (word.find('.') == std::string_view::npos) return false;
  size_t segment = 0;
  for (char c : word) {
    if (c == '.') {
      if (segment == 0) return false;
      segment = 0;
    } else if (is_alpha(c) && ++segment <= 2) {
      continue;
    } else {
      return false;
    }
  }
  return segment > 0;
}

void split_sentences(std::string_view text, std::vector<std::string_view>& out) {
  out.clear();
  const size_t n = text.size();
  size_t start = 0;
  size_t i = 0;
  while (i < n) {
    if (!is_terminal(text[i])) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < n && is_terminal(text[j])) ++j;
    const bool single_period = text[i] == '.' && j == i + 1;
    while (j < n) {
      const size_t m = closing_mark(text, j);
      if (m == 0) break;
      j += m;
    }
    const size_t end = j;
    if (j >= n || !is_space(text[j])) {
      i = j;
      continue;
    }
    while (j < n && is_space(text[j])) ++j;
    if (j >= n || !starts_sentence(text, j)) {
      i = j;
      continue;
    }
    if (single_period) {
      size_t w = i;
      while (w > start && !is_space(text[w - 1])) --w;
      if (is_abbreviation(text.substr(w, i - w), text[j])) {
        i = j;
        continue;
      }
    }
    const std::string_view piece = trim(text.substr(start, end - start));
    if (!piece.empty()) out.push_back(piece);
    start = j;
    i = j;
  }
  const std::string_view rest = trim(text.substr(std::min(start, n)));
  if (!rest.empty()) out.push_back(rest);
}

std::vector<std::string_view> split_sentences(std::string_view text) {
  std::vector<std::string_view> out;
  split_sentences(text, out);
  return out;
}

namespace {

// Per-word flags of the cue lexicon.
enum WordFlag : uint32_t {
  kWordFor = 1u << 0,          // introduces an audience: "for", "para"
  kWordAudience = 1u << 1,     // a group of people a product is for
  kWordAge = 1u << 2,          // "ages", "grade": an audience when a number follows
  kWordDetail = 1u << 3,       // a measure, a material, "includes"
  kWordWork = 1u << 4,         // books, films, records
  kWordPossessive = 1u << 5,   // "for his children" names no audience
  kWordNumber = 1u << 6,       // "aged three to six"
  kWordFirstPerson = 1u << 7,  // "I love", "I'd": a reader's review, not a description
  kWordPairTail =
      1u << 8,  // second word of a pair cue ("was born", "young readers"): check the pair
};

const WordLexicon& lexicon() {
  static const auto* table = [] {
    auto* t = new WordLexicon();
    auto add = [t](uint32_t flag, std::initializer_list<std::string_view> words) {
      for (std::string_view w : words) t->add(w, flag);
    };
    add(kWordFor, {"for", "para"});
    add(kWordAudience,
        {"children",      "child",      "kids",          "kid",      "beginners",  "beginner",
         "adults",        "adult",      "students",      "student",  "teachers",   "teacher",
         "readers",       "reader",     "fans",          "parents",  "families",   "girls",
         "boys",          "men",        "women",         "toddlers", "babies",     "infants",
         "preschoolers",  "teens",      "teenagers",     "seniors",  "cooks",      "chefs",
         "gardeners",     "collectors", "enthusiasts",   "lovers",   "musicians",  "players",
         "professionals", "educators",  "homeschoolers", "anyone",   "everyone",   "young",
         "learners",      "ages",       "grades",        "crianças", "iniciantes", "estudantes",
         "professores",   "leitores",   "adultos",       "jovens",   "fãs"});
    add(kWordAge, {"ages", "aged", "grades", "grade", "gr", "idades"});
    add(kWordNumber, {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                      "eleven", "twelve"});
    add(kWordFirstPerson,
        {"am",      "was",   "have",   "had",       "love",    "loved",   "think",
         "thought", "found", "read",   "recommend", "can",     "would",   "will",
         "really",  "just",  "bought", "highly",    "enjoyed", "believe", "know"});
    add(kWordDetail,
        {"includes",  "include",    "including",  "included",   "features",  "featuring",
         "contains",  "containing", "inches",     "inch",       "cm",        "mm",
         "oz",        "ounce",      "ounces",     "lb",         "lbs",       "pages",
         "size",      "sizes",      "dimensions", "measures",   "measuring", "material",
         "materials", "cotton",     "polyester",  "nylon",      "leather",   "steel",
         "stainless", "plastic",    "wooden",     "aluminum",   "rubber",    "battery",
         "batteries", "waterproof", "washable",   "dishwasher", "layer",     "layers",
         "colors",    "colours",    "pieces",     "pack"});
    add(kWordWork,
        {"book",        "books",       "novel",        "novels",  "story",       "stories",
         "author",      "authors",     "reader",       "readers", "film",        "films",
         "movie",       "movies",      "album",        "song",    "songs",       "chapter",
         "chapters",    "volume",      "volumes",      "edition", "illustrated", "illustrations",
         "illustrator", "poems",       "poetry",       "poet",    "cookbook",    "recipes",
         "tale",        "tales",       "biography",    "memoir",  "documentary", "episode",
         "episodes",    "music",       "photographs",  "series",  "writer",      "written",
         "novelist",    "vhs",         "dvd",          "cd",      "audiobook",   "narrator",
         "narrated",    "characters",  "plot",         "fiction", "nonfiction",  "bible",
         "essays",      "anthology",   "thriller",     "mystery", "romance",     "adventures",
         "hardcover",   "paperback",   "history",      "guide",   "directed",    "starring",
         "soundtrack",  "lyrics",      "comics",       "saga",    "trilogy",     "sequel",
         "bestseller",  "bestselling", "best-selling", "livro",   "romance"});
    add(kWordPossessive, {"his", "her", "their", "my", "our", "its", "your"});
    add(kWordPairTail, {"born", "written", "published", "authored", "in", "with", "up", "at",
                        "from", "readers", "who", "family", "of", "author"});
    return t;
  }();
  return *table;
}

bool ieq(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != lower[i]) return false;
  }
  return true;
}

bool is_year(std::string_view w) {
  if (w.size() != 4) return false;
  for (char c : w) {
    if (!is_digit(c)) return false;
  }
  return (w[0] == '1') || (w[0] == '2' && w[1] == '0');
}

// Pairs (previous word, word) that mark a biography sentence.
bool bio_pair(std::string_view prev, std::string_view word) {
  if (ieq(word, "born")) return ieq(prev, "was");
  if (ieq(word, "written") || ieq(word, "published") || ieq(word, "authored"))
    return ieq(prev, "has") || ieq(prev, "have");
  if (ieq(word, "in") || ieq(word, "with")) return ieq(prev, "lives");
  if (ieq(word, "up")) return ieq(prev, "grew");
  if (ieq(word, "at")) return ieq(prev, "teaches");
  if (ieq(word, "from")) return ieq(prev, "graduated");
  return false;
}

// Pairs (previous word, word) that name an audience without "for".
bool audience_pair(std::string_view prev, std::string_view word) {
  if (ieq(word, "readers")) return ieq(prev, "young");
  if (ieq(word, "who"))
    return ieq(prev, "anyone") || ieq(prev, "everyone");  // not "those who": too often narrative
  if (ieq(word, "family")) return ieq(prev, "whole") || ieq(prev, "entire");
  if (ieq(word, "of")) return ieq(prev, "fans") || ieq(prev, "lovers");
  return false;
}

bool is_capitalized(std::string_view w) {
  return !w.empty() && is_upper(w[0]);
}

bool is_all_caps(std::string_view w) {
  if (w.size() < 2) return false;
  for (char c : w) {
    if (is_lower(c)) return false;
  }
  return true;
}

// Words that open a sentence without naming a person.
bool is_determiner(std::string_view w) {
  for (std::string_view d :
       {"The",  "This",  "These", "That", "A",    "An",   "In",  "It",  "Its",  "Our",
        "Each", "Every", "All",   "For",  "With", "From", "New", "Now", "When", "If"}) {
    if (w == d) return true;
  }
  return false;
}

// Verbs after a leading name that make the sentence about a person.
bool is_bio_verb(std::string_view w) {
  for (std::string_view v :
       {"has", "had", "died", "lives", "lived", "grew", "studied", "worked", "works", "teaches",
        "taught", "wrote", "writes", "retired", "founded", "trained", "received", "holds"}) {
    if (w == v) return true;
  }
  return false;
}

bool is_review_opener(std::string_view w) {
  for (std::string_view v : {"Praise", "PRAISE", "Reviews", "REVIEWS", "Review", "Starred"}) {
    if (w == v) return true;
  }
  return false;
}

// Byte classes of the cue tokenizer: one table lookup per byte.
enum ByteClass : uint8_t { kOther = 0, kWordByte = 1, kBreakByte = 2 };
constexpr std::array<uint8_t, 256> kByteClass = [] {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    if (is_alpha(ch) || is_digit(ch) || c >= 0x80) t[c] = kWordByte;
  }
  for (char c : {',', ';', ':', '.', '!', '?', '(', ')'})
    t[static_cast<unsigned char>(c)] = kBreakByte;
  return t;
}();

bool word_char(char c) {
  return kByteClass[static_cast<unsigned char>(c)] == kWordByte;
}

}  // namespace

uint32_t sentence_cues(std::string_view s) {
  const auto& table = lexicon();
  uint32_t cues = 0;
  const std::string_view trimmed = trim(s);
  if (!trimmed.empty() && opening_mark(trimmed, 0) > 0 && trimmed[0] != '(' && trimmed[0] != '[')
    cues |= kCueBlurb;
  const size_t colon = s.find(':');
  if (colon != std::string_view::npos && s.find(',', colon) != std::string_view::npos)
    cues |= kCueDetail;

  std::string_view prev3, prev2, prev;  // earlier words of the current clause ("" after a break)
  int for_window = 0;                   // words left in which an audience noun completes a "for"
  bool age_pending = false;             // the previous word was an age word
  int lead_names = 0;                   // capitalized words opening the sentence ("Ian V. Hogg")
  int lead_state = 0;                   // 0: counting them, 1: after "Name is/was", 2: done
  int index = 0;                        // of the word in the sentence
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    bool clause_break = false;
    while (i < n) {
      const uint8_t cls = kByteClass[static_cast<unsigned char>(s[i])];
      if (cls == kWordByte) break;
      if (cls == kBreakByte || (s[i] == '-' && i + 1 < n && s[i + 1] == '-')) clause_break = true;
      ++i;
    }
    if (i >= n) break;
    size_t j = i + 1;
    while (j < n &&
           (word_char(s[j]) || ((s[j] == '-' || s[j] == '\'') && j + 1 < n && word_char(s[j + 1]))))
      ++j;
    const std::string_view word = s.substr(i, j - i);
    i = j;
    if (clause_break && lead_state == 0 && prev.size() != 1)
      lead_state = 2;  // an initial's '.' is no break
    if (clause_break) {
      age_pending = age_pending && ieq(prev, "gr");  // "Gr. 3-7"
      prev3 = prev2 = prev = {};
      for_window = 0;
    }
    if (is_digit(word[0])) {
      if (!is_year(word)) cues |= kCueDetail;
      if (age_pending) cues |= kCueAudience;
    }
    const uint32_t flags = table.find(word);
    // Sentences about a person: "She ...", "Casey Watson is a specialist foster carer."
    if (index == 0 && (word == "He" || word == "She")) cues |= kCueBio;
    if (index == 0 && is_review_opener(word)) cues |= kCueBlurb;  // "Praise for the series: ..."
    if (lead_state == 0) {
      if (is_capitalized(word) && !(index == 0 && (is_determiner(word) || is_all_caps(word)))) {
        ++lead_names;
      } else {
        lead_state = 2;
        if (lead_names >= 2 && lead_names <= 4) {
          if (word == "is" || word == "was") lead_state = 1;
          if (is_bio_verb(word)) cues |= kCueBio;
        }
      }
    } else if (lead_state == 1) {
      if (word == "a" || word == "an" || word == "the" || word == "one") cues |= kCueBio;
      lead_state = 2;
    }
    // First person: a reader's review ("I love", "I'd", "I’m").
    if ((prev == "I" && (flags & kWordFirstPerson)) ||
        (word.size() <= 6 && (word.starts_with("I'") || word.starts_with("I\xE2\x80\x99")))) {
      cues |= kCueBlurb;
    }
    if ((flags & kWordNumber) && age_pending) cues |= kCueAudience;
    if (flags & kWordDetail) cues |= kCueDetail;
    if (flags & kWordWork) cues |= kCueWork;
    if (for_window > 0) {
      const bool bare_ages = ieq(word, "ages") && !ieq(prev, "all");  // "for ages" is an idiom
      if ((flags & kWordAudience) && !bare_ages && !is_all_caps(word))
        cues |= kCueAudience;  // not "REVIEWS FOR BEAUTIFUL CHILD"
      for_window = (flags & kWordPossessive) ? 0 : for_window - 1;
    }
    if (flags & kWordFor) for_window = 3;
    if (!prev.empty() && (flags & kWordPairTail)) {
      if (audience_pair(prev, word)) cues |= kCueAudience;
      if (bio_pair(prev, word)) cues |= kCueBio;
      if (ieq(word, "up") && ieq(prev, "and") && !prev2.empty() && is_digit(prev2[0]))
        cues |= kCueAudience;
      if ((ieq(word, "of") || ieq(word, "from") || ieq(word, "with")) &&
          (ieq(prev, "made") || ieq(prev, "comes"))) {
        cues |= kCueDetail;
      }
      // "is the author", "is the bestselling author"
      if (ieq(word, "author") && (ieq(prev2, "is") || (ieq(prev3, "is") && ieq(prev2, "the"))))
        cues |= kCueBio;
    }
    age_pending = (flags & kWordAge) != 0;
    prev3 = prev2;
    prev2 = prev;
    prev = word;
    ++index;
  }
  return cues;
}

}  // namespace vitrine::dataset
