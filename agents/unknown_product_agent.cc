#include "agents/unknown_product_agent.h"

#include <fmt/format.h>

#include <stdexcept>
#include <unordered_set>

#include "catalog/catalog.h"

namespace vitrine::agents {
namespace {

// Words that only one of the two languages uses in questions. Words both
// use ("a", "me", "as") and English "do" (Portuguese "do" = "of the") are
// in neither list.
const std::unordered_set<std::string_view>& english_words() {
  static const std::unordered_set<std::string_view> words = {
      "the",   "what", "who",   "whom",   "whose", "which", "when",    "where",   "why",   "how",
      "is",    "are",  "was",   "were",   "does",  "did",   "has",     "have",    "had",   "can",
      "could", "will", "would", "should", "it",    "its",   "this",    "that",    "these", "those",
      "of",    "and",  "or",    "for",    "with",  "about", "from",    "there",   "any",   "tell",
      "you",   "your", "i",     "my",     "an",    "in",    "on",      "at",      "to",    "be",
      "by",    "many", "much",  "long",   "give",  "show",  "explain", "describe"};
  return words;
}

const std::unordered_set<std::string_view>& portuguese_words() {
  static const std::unordered_set<std::string_view> words = {
      "o",     "os",     "um",       "uma",      "uns",     "umas",   "que",   "quem",    "qual",
      "quais", "quanto", "quanta",   "quantos",  "quantas", "quando", "onde",  "como",    "porque",
      "por",   "para",   "com",      "sem",      "sobre",   "de",     "da",    "das",     "dos",
      "em",    "na",     "no",       "nas",      "nos",     "ao",     "aos",   "e",       "tem",
      "há",    "não",    "sim",      "ele",      "ela",     "isso",   "isto",  "este",    "esta",
      "esse",  "essa",   "você",     "meu",      "minha",   "seu",    "sua",   "quero",   "saber",
      "fale",  "diga",   "explique", "descreva", "existe",  "pode",   "mais",  "muito",   "é",
      "são",   "está",   "também",   "qualquer", "livro",   "preço",  "custa", "escreveu"};
  return words;
}

bool is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

// `word` in lowercase: ASCII, and the Latin-1 capitals (U+00C0..U+00DE, but
// U+00D7 ×) that Portuguese writes ("É", "Ç").
std::string lowercase(std::string_view word) {
  std::string out(word);
  for (size_t i = 0; i < out.size(); ++i) {
    const auto c = static_cast<unsigned char>(out[i]);
    if (c >= 'A' && c <= 'Z') {
      out[i] = static_cast<char>(c - 'A' + 'a');
    } else if (c == 0xC3 && i + 1 < out.size()) {
      const auto next = static_cast<unsigned char>(out[i + 1]);
      if (next >= 0x80 && next <= 0x9E && next != 0x97) out[i + 1] = static_cast<char>(next + 0x20);
      ++i;
    }
  }
  return out;
}

// A lowercase Latin-1 letter with an accent (U+00E0..U+00FF, but U+00F7 ÷):
// "ã", "ç", "é", ...; English words have none.
bool has_accented_letter(std::string_view lower_word) {
  for (size_t i = 0; i + 1 < lower_word.size(); ++i) {
    if (static_cast<unsigned char>(lower_word[i]) != 0xC3) continue;
    const auto next = static_cast<unsigned char>(lower_word[i + 1]);
    if (next >= 0xA0 && next <= 0xBF && next != 0xB7) return true;
  }
  return false;
}

// The first sentence of the fixed answer, in each language.
constexpr std::string_view kEnglishOpening =
    "I don't know that product: nothing in the catalogue matches your question, so I won't make "
    "up an answer.";
constexpr std::string_view kPortugueseOpening =
    "Não conheço esse produto: nada no catálogo corresponde à sua pergunta, por isso não vou "
    "inventar uma resposta.";

// `titles` in double quotes: "A", "B" and "C" (`and` being the language's).
std::string quoted_list(const std::vector<Source>& titles, std::string_view and_word) {
  std::string out;
  for (size_t i = 0; i < titles.size(); ++i) {
    if (i > 0) out += i + 1 == titles.size() ? fmt::format(" {} ", and_word) : ", ";
    out += fmt::format("\"{}\"", titles[i].title);
  }
  return out;
}

}  // namespace

std::string_view language_code(AnswerLanguage language) {
  return language == AnswerLanguage::kPortuguese ? "pt" : "en";
}

AnswerLanguage question_language(std::string_view question) {
  int english = 0, portuguese = 0;
  const size_t n = question.size();
  for (size_t i = 0; i < n;) {
    while (i < n && !is_word_byte(static_cast<unsigned char>(question[i]))) ++i;
    size_t j = i;
    while (j < n && is_word_byte(static_cast<unsigned char>(question[j]))) ++j;
    if (j == i) break;
    const std::string word = lowercase(question.substr(i, j - i));
    english += english_words().contains(word);
    portuguese += portuguese_words().contains(word) || has_accented_letter(word);
    i = j;
  }
  return portuguese > english ? AnswerLanguage::kPortuguese : AnswerLanguage::kEnglish;
}

std::string unknown_product_text(AnswerLanguage language, const std::vector<Source>& closest) {
  std::string text(language == AnswerLanguage::kPortuguese ? kPortugueseOpening : kEnglishOpening);
  if (language == AnswerLanguage::kPortuguese) {
    if (closest.empty()) return text + " Pergunte-me sobre um produto pelo seu título.";
    return text +
           fmt::format(" {} no catálogo {} {}.",
                       closest.size() == 1 ? "O título mais próximo" : "Os títulos mais próximos",
                       closest.size() == 1 ? "é" : "são", quoted_list(closest, "e"));
  }
  if (closest.empty()) return text + " Ask me about a product by its title.";
  return text + fmt::format(" The closest {} in the catalogue {} {}.",
                            closest.size() == 1 ? "title" : "titles",
                            closest.size() == 1 ? "is" : "are", quoted_list(closest, "and"));
}

bool said_unknown_product(std::string_view text) {
  return text.starts_with(kEnglishOpening) || text.starts_with(kPortugueseOpening);
}

UnknownProductAgent::UnknownProductAgent(std::shared_ptr<const Catalog> catalog,
                                         UnknownProductOptions options)
    : catalog_(std::move(catalog)), options_(options) {
  if (!catalog_) throw std::invalid_argument("unknown-product agent: no catalogue");
}

std::vector<Source> UnknownProductAgent::closest(std::string_view question) const {
  return find_sources(
      *catalog_, question,
      {.min_score = options_.closest_min_score, .max_sources = options_.max_closest});
}

UnknownProductAnswer UnknownProductAgent::answer(std::string_view question) const {
  UnknownProductAnswer out;
  out.language = question_language(question);
  out.closest = closest(question);
  out.text = unknown_product_text(out.language, out.closest);
  return out;
}

}  // namespace vitrine::agents
