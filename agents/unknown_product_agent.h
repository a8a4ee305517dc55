// The unknown-product agent: the honest answer to a question about a product
// the catalogue does not have ("What is the battery life of the zq-9000
// hyperdrive?"). The qa agent (agents/qa_agent.h) decides that a question is
// about no known product: no title scores qa_min_score and no earlier turn
// names one. Generating anyway only invents an answer, so with
// UnknownProduct::kSay the daemon (router/answerer.h) runs no model and
// answers with this agent's fixed sentence, in the question's language, that
// says so and names the catalogue's closest titles:
//
//   en: I don't know that product: nothing in the catalogue matches your
//       question, so I won't make up an answer. The closest titles in the
//       catalogue are "A", "B" and "C".
//   pt: Não conheço esse produto: nada no catálogo corresponde à sua
//       pergunta, por isso não vou inventar uma resposta. Os títulos mais
//       próximos no catálogo são "A", "B" e "C".
//
// (with no title close enough, the second sentence asks for the product's
// title instead).
//
// The closest titles are Catalog::find_by_title on the question's wording at
// a lower bar (closest_min_score) than the one that names a product: near
// misses, which the answer offers and never claims to be about.
//
// The language is question_language(), a vote of its own rather than
// dataset::detect_language: that one reads a product's title and
// description, needs four words and a 1.5x margin among six languages
// ("e quem escreveu?" is "unknown" there), and agents/ may not include
// dataset/ (DESIGN.md's layers). Here every word of the question votes: an
// English function or question word ("the", "what", "does") for English; a
// Portuguese one ("o", "qual", "tem", "não") or a word with a Portuguese
// accented letter (á, ã, ç, é, ...) for Portuguese. Portuguese wins with
// more votes; otherwise (ties, no cue at all) English, the catalogue's
// main language.
//
// Not goals: other languages (the answer is English or Portuguese),
// deciding that a product is unknown (the qa agent's), generating anything.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agents/agent_options.h"
#include "agents/agent_results.h"

namespace vitrine::agents {

// The languages the fixed sentence is written in.
enum class AnswerLanguage { kEnglish, kPortuguese };
// "en", "pt".
std::string_view language_code(AnswerLanguage language);
// The language of `question` by the vote above. Never throws.
AnswerLanguage question_language(std::string_view question);

// The fixed sentence in `language`, naming `closest` (best first) in double quotes.
std::string unknown_product_text(AnswerLanguage language, const std::vector<Source>& closest);

// Whether `text` is one of unknown_product_text's answers (an earlier turn of
// the conversation the daemon answered so). Its closest titles are offered,
// not the conversation's product: a follow-up after it ("and who wrote
// it?") is still about the unknown one, so the answerer keeps such turns
// out of the qa agent's search of the history.
bool said_unknown_product(std::string_view text);

struct UnknownProductAnswer {
  std::string text;  // unknown_product_text
  AnswerLanguage language = AnswerLanguage::kEnglish;
  std::vector<Source> closest;  // best first; evidence kText
};

class UnknownProductAgent {
 public:
  explicit UnknownProductAgent(std::shared_ptr<const Catalog> catalog,
                               UnknownProductOptions options = {});

  // The catalogue titles nearest to `question`'s wording: at least
  // closest_min_score, at most max_closest, best first. Never throws on user text.
  std::vector<Source> closest(std::string_view question) const;
  // The fixed answer to `question`, which the caller has found to be about
  // no known product. Never throws on user text.
  UnknownProductAnswer answer(std::string_view question) const;

  const UnknownProductOptions& options() const { return options_; }

 private:
  std::shared_ptr<const Catalog> catalog_;
  UnknownProductOptions options_;
};

}  // namespace vitrine::agents
