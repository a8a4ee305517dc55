// The qa agent: finds the product a shopper's question is about
// (Catalog::find_by_title on the question's wording) and builds the qa
// adapter's request with prompts::qa_turn, grounded in that product as the
// adapter was trained (its prompts::QaFormat, from its prompt_format.json):
//
//   none         task_turn(kQa, question): the closed-book training prompt
//   title        the product's title before the question
//   description  its title and its description, cut to max_description_chars
//
// so an adapter sees at serving the prompt it learnt from. The daemon's
// routing.grounding and max_description_chars override the adapter's own
// (QaAgentOptions), for trying a grounding on an adapter not trained with
// it. The sources are the records the question matched at min_score or
// better; below it the product is unknown, the prompt is the
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
  // question names no product. `adapter` is the format the answering
  // adapter was trained with (closed-book when not given). Never throws on
  // user text.
  AgentPrompt prompt(std::string_view question, std::span<const models::ChatMessage> history = {},
                     const prompts::QaFormat& adapter = {}) const;

  // `adapter` with this agent's overrides applied: the format prompt() asks in.
  prompts::QaFormat format_for(const prompts::QaFormat& adapter) const;

 private:
  std::shared_ptr<const Catalog> catalog_;
  QaAgentOptions options_;
};

}  // namespace vitrine::agents
