// The qa agent: finds the product a shopper's question is about
// (Catalog::find_by_title on the question's wording) and builds the qa
// adapter's request, grounded in that product as configured:
//
//   kNone                 task_turn(kQa, question): exactly the training prompt
//   kTitle                grounded_qa_turn(question, title)
//   kTitleAndDescription  grounded_qa_turn(question, title, description cut to
//                         max_description_chars)
//
// Grounded prompts (prompts/prompts.h) differ from the prompt the qa adapter
// was tuned on: they name the product and its description before the
// question, which a base or tuned model can read, but which no training
// example showed. The sources are the records the question matched at
// min_score or better; below it the product is unknown, the prompt is the
// ungrounded one whatever the grounding, and the sources say so (empty,
// product_known false) rather than naming a near miss.
//
// In a conversation, a question that names no product by itself is taken to
// be about the product of the latest earlier message that names one
// (find_sources_in_history): "and who wrote it?" after "What is Dune
// about?" is about Dune, its source says so (evidence kEarlierTurn), and a
// grounded prompt names Dune. A question that names a product is about that
// product, whatever came before.
//
// Not goals: generating the answer, retrieving passages by meaning
// (descriptions are not searched), several products in one question (the
// best match grounds the prompt), rewriting the question itself (the
// earlier messages go into the prompt beside it; router/answerer.h).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "agents/agent_options.h"
#include "agents/agent_results.h"
#include "catalog/catalog.h"

namespace vitrine::agents {

class QaAgent {
 public:
  explicit QaAgent(std::shared_ptr<const Catalog> catalog, QaAgentOptions options = {});

  // The qa request for `question` and the records it is about; `history`
  // (the conversation before it, oldest first) is searched only when the
  // question names no product. Never throws on user text.
  AgentPrompt prompt(std::string_view question,
                     std::span<const models::ChatMessage> history = {}) const;

 private:
  std::shared_ptr<const Catalog> catalog_;
  QaAgentOptions options_;
};

// `text` cut to at most `max_chars` bytes at a word boundary, never inside
// a UTF-8 sequence, with "..." appended when cut. Deterministic.
std::string cut_description(std::string_view text, size_t max_chars);

}  // namespace vitrine::agents
