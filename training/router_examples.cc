#include "training/router_examples.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "common/stable_hash.h"
#include "training/router_phrasings.h"

namespace vitrine::training {
namespace {

// A seeded stream of draws (splitmix64): the same on every platform, unlike
// the standard distributions.
class Draw {
 public:
  explicit Draw(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
  bool chance(double p) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }
  template <class Items>
  const auto& pick(const Items& items) {
    return items[below(std::size(items))];
  }

 private:
  uint64_t state_;
};

bool is_ascii_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

// The main title: before the first ':', " (", " - ", " [" or " -- ".
std::string_view main_title(std::string_view title) {
  size_t end = title.size();
  for (const std::string_view cut : {":", " (", " - ", " [", " -- "}) {
    const size_t at = title.find(cut);
    if (at != std::string_view::npos && at >= 3) end = std::min(end, at);
  }
  std::string_view out = title.substr(0, end);
  while (!out.empty() && (out.back() == ' ' || out.back() == '?' || out.back() == '.')) {
    out.remove_suffix(1);
  }
  return out.size() >= 3 ? out : title;
}

std::vector<std::string_view> split_words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    const size_t start = i;
    while (i < s.size() && s[i] != ' ') ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

std::string join_words(std::span<const std::string_view> words) {
  std::string out;
  for (const std::string_view w : words) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

// Punctuation a user leaves out of a title: "harvey penicks little red golf book".
std::string without_punctuation(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (c == ',' || c == ':' || c == '(' || c == ')' || c == '!' || c == '?' || c == '\'' ||
        c == '.' || c == '[' || c == ']' || c == '"' || c == ';') {
      continue;
    }
    if (c == ' ' && !out.empty() && out.back() == ' ') continue;
    out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Portuguese typed without accents: "voce", "e", "informacoes".
std::string without_accents(std::string s) {
  static constexpr std::pair<std::string_view, std::string_view> kFolds[] = {
      {"á", "a"}, {"à", "a"}, {"â", "a"}, {"ã", "a"}, {"é", "e"}, {"ê", "e"}, {"í", "i"},
      {"ó", "o"}, {"ô", "o"}, {"õ", "o"}, {"ú", "u"}, {"ç", "c"}, {"É", "E"}, {"Á", "A"}};
  for (const auto& [from, to] : kFolds) replace_all(s, from, to);
  return s;
}

// One typing slip in a word of at least 4 ASCII letters: a letter dropped,
// two swapped, one doubled or a vowel changed. Unchanged when no word fits.
std::string with_typo(std::string s, Draw& draw) {
  std::vector<std::pair<size_t, size_t>> words;  // [begin, end) of candidate words
  for (size_t i = 0; i < s.size();) {
    if (!is_ascii_letter(s[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < s.size() && is_ascii_letter(s[end])) ++end;
    if (end - i >= 4) words.emplace_back(i, end);
    i = end;
  }
  if (words.empty()) return s;
  const auto [begin, end] = words[draw.below(words.size())];
  const size_t at = begin + 1 + draw.below(end - begin - 2);  // never the first or last letter
  switch (draw.below(4)) {
    case 0:
      s.erase(at, 1);
      break;
    case 1:
      std::swap(s[at], s[at + 1]);
      break;
    case 2:
      s.insert(at, 1, s[at]);
      break;
    default: {
      static constexpr std::string_view kVowels = "aeiou";
      const char c = s[at];
      s[at] = kVowels.find(c) == std::string_view::npos ? kVowels[draw.below(5)]
                                                        : kVowels[(kVowels.find(c) + 1) % 5];
      break;
    }
  }
  return s;
}

// How the product is named inside a question.
std::string title_form(std::string_view title, Draw& draw) {
  const std::string_view main = main_title(title);
  const std::vector<std::string_view> main_words = split_words(main);
  const size_t roll = draw.below(100);
  if (roll < 30) return std::string(title);
  if (roll < 60) return std::string(main);
  if (roll < 75) return lower(draw.chance(0.5) ? title : main);
  if (roll < 85) return lower(without_punctuation(main));
  if (roll < 95 && main_words.size() >= 4) {
    const size_t keep = 2 + draw.below(main_words.size() - 2);
    return join_words(std::span(main_words).first(keep));
  }
  return std::string(main);
}

// The title as a user types it to have it described.
std::string noisy_title(std::string_view title, Draw& draw) {
  const std::string_view main = main_title(title);
  const std::vector<std::string_view> main_words = split_words(main);
  switch (draw.below(10)) {
    case 0:
      return lower(title);
    case 1:
      return std::string(main);
    case 2:
      return lower(main);
    case 3:
      if (main_words.size() >= 4) {
        return join_words(std::span(main_words).first(2 + draw.below(main_words.size() - 2)));
      }
      return lower(without_punctuation(title));
    case 4:
      return lower(without_punctuation(title));
    case 5:
      return with_typo(draw.chance(0.5) ? lower(main) : std::string(main), draw);
    case 6:
      return upper(main);
    case 7:
      if (draw.chance(0.3)) {  // "{title} by {name}", as listings credit authors
        return std::string(main) + (draw.chance(0.7) ? " by " : " - ") +
               std::string(draw.pick(kFirstNames)) + " " + std::string(draw.pick(kSurnames));
      }
      return std::string(draw.chance(0.5) ? main : title) + std::string(draw.pick(kListingWords));
    case 8:
      if (main.size() > 4 && (main.substr(0, 4) == "The " || main.substr(0, 4) == "the ")) {
        return lower(main.substr(4));
      }
      return lower(without_punctuation(main));
    default:
      return std::string(title);
  }
}

// Fills a phrasing: {t} the product's name, {x} a topic, {n} an age.
std::string fill(std::string_view phrasing, std::string_view name, bool portuguese, Draw& draw) {
  std::string out(phrasing);
  replace_all(out, "{x}", portuguese ? draw.pick(kPortugueseTopics) : draw.pick(kEnglishTopics));
  replace_all(out, "{n}", std::to_string(3 + draw.below(12)));
  replace_all(out, "{t}", name);
  return out;
}

// A phrasing drawn shape first, so that every shape is seen as often.
const Phrasing& pick_phrasing(std::span<const Phrasing> phrasings, Draw& draw) {
  static constexpr std::string_view kShapes[] = {"wh",      "yes_no",  "wh",    "yes_no", "request",
                                                 "request", "fronted", "topic", "format"};
  const std::string_view shape = kShapes[draw.below(std::size(kShapes))];
  size_t n = 0;
  for (const Phrasing& p : phrasings) n += p.shape == shape;
  size_t k = draw.below(n);
  for (const Phrasing& p : phrasings) {
    if (p.shape == shape && k-- == 0) return p;
  }
  return phrasings.front();
}

// Casing, punctuation and the extras users type around a question; the
// final '?' stays when `keep_mark`.
std::string casual(std::string text, bool portuguese, bool keep_mark, Draw& draw) {
  const size_t roll = draw.below(10);
  if (roll < 5 && !text.empty() && text[0] >= 'a' && text[0] <= 'z') {
    text[0] = static_cast<char>(text[0] - 'a' + 'A');  // sentence case
  }
  if (!keep_mark && draw.chance(0.35)) {
    while (!text.empty() && (text.back() == '?' || text.back() == '.')) text.pop_back();
  } else if (text.empty() || text.back() != '?') {
    if (draw.chance(0.3)) text += draw.chance(0.5) ? "." : "?";
  }
  if (draw.chance(0.15)) replace_all(text, "'", "");
  if (portuguese && draw.chance(0.3)) text = without_accents(std::move(text));
  if (draw.chance(0.15)) {
    text = std::string(portuguese ? draw.pick(kPortugueseOpenings) : draw.pick(kEnglishOpenings)) +
           text;
  }
  if (!keep_mark && draw.chance(0.05)) {
    text += portuguese ? draw.pick(kPortugueseEndings) : draw.pick(kEnglishEndings);
  }
  if (draw.chance(0.15)) text = with_typo(std::move(text), draw);
  if (draw.chance(0.1)) text = lower(text);
  return text;
}

}  // namespace

void validate(const RouterExampleOptions& o) {
  const auto require = [](bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument("router examples: " + message);
  };
  require(o.questions_per_title >= 0 && o.questions_per_title <= 100,
          fmt::format("questions_per_title must be in [0, 100]: got {}", o.questions_per_title));
  require(o.titles_per_title >= 0 && o.titles_per_title <= 100,
          fmt::format("titles_per_title must be in [0, 100]: got {}", o.titles_per_title));
  require(o.portuguese_share >= 0 && o.portuguese_share <= 1,
          fmt::format("portuguese_share must be in [0, 1]: got {}", o.portuguese_share));
  require(
      o.without_evidence_share >= 0 && o.without_evidence_share <= 1,
      fmt::format("without_evidence_share must be in [0, 1]: got {}", o.without_evidence_share));
  require(o.max_titles >= 0, fmt::format("max_titles must be >= 0: got {}", o.max_titles));
}

bool title_reads_as_question(std::string_view title) {
  static constexpr std::string_view kOpeners[] = {
      "who",    "whom",  "whose", "what", "what's", "whats",   "which",   "when", "where",
      "why",    "how",   "is",    "are",  "can",    "could",   "do",      "does", "did",
      "should", "would", "will",  "tell", "please", "explain", "describe"};
  std::string_view t = title;
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  if (!t.empty() && t.back() == '?') return true;
  const std::vector<std::string_view> words = split_words(t);
  if (words.empty()) return false;
  std::string first = lower(words.front());
  while (!first.empty() && !is_ascii_letter(first.back()) && first.back() != '\'') first.pop_back();
  return std::find(std::begin(kOpeners), std::end(kOpeners), first) != std::end(kOpeners);
}

std::vector<RouterExample> generate_router_examples(std::span<const std::string> titles,
                                                    const RouterExampleOptions& options) {
  validate(options);
  // The titles used: all, or the max_titles with the lowest hashes, in
  // their given order.
  std::vector<size_t> chosen(titles.size());
  for (size_t i = 0; i < titles.size(); ++i) chosen[i] = i;
  if (static_cast<int64_t>(titles.size()) > options.max_titles) {
    std::vector<std::pair<uint64_t, size_t>> keyed;
    for (size_t i = 0; i < titles.size(); ++i) {
      keyed.emplace_back(stable_hash64(titles[i], options.seed), i);
    }
    std::nth_element(keyed.begin(), keyed.begin() + options.max_titles, keyed.end());
    keyed.resize(static_cast<size_t>(options.max_titles));
    chosen.clear();
    for (const auto& [_, i] : keyed) chosen.push_back(i);
    std::sort(chosen.begin(), chosen.end());
  }
  std::vector<RouterExample> out;
  for (const size_t i : chosen) {
    const std::string& title = titles[i];
    if (title.empty()) continue;
    Draw draw(stable_hash64(title, options.seed ^ 0x726f75746572ULL));  // "router"
    const bool question_like = title_reads_as_question(title);
    for (int q = 0; q < options.questions_per_title; ++q) {
      const bool portuguese = draw.chance(options.portuguese_share);
      const Phrasing& p = pick_phrasing(portuguese ? std::span<const Phrasing>(kPortuguesePhrasings)
                                                   : std::span<const Phrasing>(kEnglishPhrasings),
                                        draw);
      std::string text = fill(p.text, title_form(title, draw), portuguese, draw);
      text = casual(std::move(text), portuguese, p.shape == "format", draw);
      std::string kind = p.shape == "wh" || p.shape == "yes_no" ? "question" : std::string(p.shape);
      if (portuguese) kind += "_pt";
      out.push_back(
          {std::move(text), "qa", std::move(kind), !draw.chance(options.without_evidence_share)});
    }
    for (int t = 0; t < options.titles_per_title; ++t) {
      std::string text = noisy_title(title, draw);
      // A question-like title means nothing without the catalogue.
      const bool evidence = question_like || !draw.chance(options.without_evidence_share);
      out.push_back({std::move(text), "describe", "noisy_title", evidence});
    }
  }
  return out;
}

}  // namespace vitrine::training
