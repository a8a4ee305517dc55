#include "models/text_features.h"

#include <algorithm>
#include <cctype>
#include <unordered_set>

#include "common/stable_hash.h"

namespace vitrine::models {
namespace {

// The placeholder word a catalogue title becomes (set 2 with evidence); a
// control byte, so no typed word can equal it.
constexpr std::string_view kTitleWord = "\x01title";

// Words that ask, in English and Portuguese, ASCII-folded as users type
// them ("voce", "e"): the question and request words whose position says
// most about what a text is. Ordinary words otherwise: they still get their
// word and n-gram slots.
bool is_cue_word(std::string_view word) {
  static const std::unordered_set<std::string_view> cues = {
      // English: question words, auxiliaries that open a yes/no question, requests
      "who", "whom", "whose", "what", "whats", "which", "when", "where", "why", "how", "is", "are",
      "was", "were", "does", "do", "did", "can", "could", "would", "should", "will", "has", "have",
      "any", "tell", "explain", "describe", "give", "summarize", "summarise", "show", "list",
      "recommend", "compare", "outline", "help", "want", "need", "wondering", "know",
      // Portuguese
      "quem", "que", "qual", "quais", "quando", "onde", "como", "porque", "por", "quanto",
      "quantos", "quanta", "quantas", "tem", "existe", "fale", "fala", "explique", "explica",
      "descreva", "descreve", "conte", "conta", "resuma", "quero", "gostaria", "preciso", "pode",
      "poderia", "voce", "sabe", "vale", "serve", "sobre", "diga", "mostre", "mostra"};
  return cues.count(word) > 0;
}

// Words a listing adds to a title ("Wolf Hall paperback", "... 2nd
// edition", "livro capa dura"): around a title they leave it a title.
// Numbers count as listing words too (volumes, years, editions).
bool is_listing_word(std::string_view word) {
  static const std::unordered_set<std::string_view> words = {
      "paperback", "hardcover", "hardback", "softcover", "kindle", "edition",     "ed",
      "audiobook", "audio",     "cd",       "dvd",       "bluray", "box",         "boxed",
      "set",       "volume",    "vol",      "book",      "books",  "new",         "used",
      "1st",       "2nd",       "3rd",      "4th",       "5th",    "illustrated", "unabridged",
      "abridged",  "large",     "print",    "pocket",    "uk",     "us",          "english",
      "version",   "copy",      "signed",   "livro",     "livros", "capa",        "dura",
      "mole",      "edicao",    "edição",   "ingles",    "inglês", "versao",      "versão"};
  return words.count(word) > 0 ||
         std::all_of(word.begin(), word.end(), [](char c) { return c >= '0' && c <= '9'; });
}

struct Word {
  std::string text;  // ASCII-lowercased
  bool capital = false;
};

// Words: runs of letters, digits and non-ASCII bytes, of text[begin, end).
void cut_words(std::string_view text, size_t begin, size_t end, std::vector<Word>& out) {
  Word word;
  for (size_t i = begin; i < end; ++i) {
    const auto u = static_cast<unsigned char>(text[i]);
    if (std::isalnum(u) || u >= 0x80) {
      if (word.text.empty()) word.capital = u >= 'A' && u <= 'Z';
      word.text.push_back(u >= 'A' && u <= 'Z' ? static_cast<char>(u - 'A' + 'a')
                                               : static_cast<char>(u));
    } else if (!word.text.empty()) {
      out.push_back(std::move(word));
      word = Word{};
    }
  }
  if (!word.text.empty()) out.push_back(std::move(word));
}

std::string_view count_bin(size_t n) {
  static constexpr std::string_view bins[] = {"0",   "1",   "2",   "3",  "4-5",
                                              "4-5", "6-8", "6-8", "6-8"};
  return n < std::size(bins) ? bins[n] : "9+";
}

}  // namespace

TextFeatures text_features(std::string_view text, const TextClassifierConfig& c,
                           const TitleEvidence& evidence) {
  const bool extended = c.feature_set >= 2;
  const bool masked = extended && c.title_evidence && evidence.found;
  std::vector<Word> words;
  size_t title_at = std::string_view::npos;  // index of the placeholder word
  if (masked) {
    const size_t begin = std::min(evidence.begin, text.size());
    const size_t end = std::clamp(evidence.end, begin, text.size());
    cut_words(text, 0, begin, words);
    title_at = words.size();
    words.push_back(Word{std::string(kTitleWord), false});
    cut_words(text, end, text.size(), words);
  } else {
    cut_words(text, 0, text.size(), words);
  }
  TextFeatures features;
  std::vector<int64_t>& out = features.slots;
  const auto slot = [&](std::string_view kind, std::string_view value) {
    const uint64_t h = stable_hash64(value, stable_hash64(kind));
    out.push_back(static_cast<int64_t>(h % static_cast<uint64_t>(c.buckets)));
  };
  std::string marked;
  for (size_t i = 0; i < words.size(); ++i) {
    slot("w", words[i].text);
    if (c.word_bigrams && i + 1 < words.size()) slot("b", words[i].text + ' ' + words[i + 1].text);
    if (i == title_at) continue;  // the title's own letters say nothing of the question
    marked = "<" + words[i].text + ">";
    for (int n = c.char_min; n <= c.char_max; ++n) {
      for (size_t k = 0; k + static_cast<size_t>(n) <= marked.size(); ++k) {
        slot("c", std::string_view(marked).substr(k, static_cast<size_t>(n)));
      }
    }
  }
  features.n_text = out.size();
  // How the text ends is the strongest single sign of a question; a text
  // that ends with the title (its own '?' included) ends with the title.
  const size_t last = text.find_last_not_of(" \t\r\n");
  std::string end_char;
  if (masked && (last == std::string_view::npos || last < std::min(evidence.end, text.size()))) {
    end_char = kTitleWord;
  } else if (last != std::string_view::npos) {
    const auto u = static_cast<unsigned char>(text[last]);
    end_char.push_back(u >= 'A' && u <= 'Z' ? static_cast<char>(u - 'A' + 'a') : text[last]);
  }
  slot("end", end_char);
  if (words.empty()) slot("empty", "");
  if (!extended) return features;

  // Set 2: positions, shape, evidence.
  if (!words.empty()) {
    slot("first", words.front().text);
    slot("last", words.back().text);
    if (words.size() >= 2) slot("first2", words[0].text + ' ' + words[1].text);
  }
  for (size_t i = 0; i < words.size(); ++i) {
    if (i == title_at || !is_cue_word(words[i].text)) continue;
    const std::string_view where = i == 0 ? "first"
                                   : title_at != std::string_view::npos && i == title_at + 1
                                       ? "after-title"
                                   : i + 1 == words.size() ? "last"
                                                           : "inside";
    slot("cue@" + std::string(where), words[i].text);
    slot("cue-at", where);
  }
  // A '?' before the end, not the title's own: "<title>? is it for oils too?".
  for (size_t at = text.find('?'); at != std::string_view::npos && at < last;
       at = text.find('?', at + 1)) {
    if (masked && at >= evidence.begin && at < evidence.end) continue;
    slot("qmark", "inside");
    break;
  }
  slot("words", count_bin(words.size()));
  // Capitals after the first word, outside the title: how titles are written.
  size_t capitals = 0, counted = 0;
  for (size_t i = 1; i < words.size(); ++i) {
    if (i == title_at) continue;
    ++counted;
    capitals += words[i].capital;
  }
  if (counted >= 2) {
    slot("capitals", 2 * capitals >= counted ? "most" : capitals > 0 ? "some" : "none");
  }
  if (c.title_evidence) {
    if (!masked) {
      slot("evidence", "none");
    } else {
      slot("evidence", "before " + std::string(count_bin(title_at)));
      slot("evidence", "after " + std::string(count_bin(words.size() - title_at - 1)));
      slot("evidence", evidence.coverage >= 0.999 ? "whole"
                       : evidence.coverage >= 0.5 ? "most"
                                                  : "part");
      // Listing words only, or an author credited after the title ("<title>
      // by Hilary Mantel"): still a title.
      bool listing_only = true;
      for (size_t i = 0; i < words.size() && listing_only; ++i) {
        if (i > title_at && (words[i].text == "by" || words[i].text == "por")) break;
        listing_only = i == title_at || is_listing_word(words[i].text);
      }
      slot("around", words.size() == 1 ? "nothing" : listing_only ? "listing" : "other");
    }
  }
  // The bag's weights: the text's slots share 1 - kStructureShare, the
  // structure's kStructureShare (or all of it when the other group is empty).
  const size_t n_structure = out.size() - features.n_text;
  const float text_share = n_structure == 0       ? 1.0f
                           : features.n_text == 0 ? 0.0f
                                                  : 1 - kStructureShare;
  features.weights.resize(out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    features.weights[i] = i < features.n_text ? text_share / static_cast<float>(features.n_text)
                                              : (1 - text_share) / static_cast<float>(n_structure);
  }
  return features;
}

}  // namespace vitrine::models
