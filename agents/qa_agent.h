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
// Not goals: generating the answer, retrieving passages by meaning
// (descriptions are not searched), several products in one question (the
// best match grounds the prompt).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "agents/agent_results.h"
#include "catalog/catalog.h"

namespace vitrine::agents {

enum class Grounding {
  kNone,                 // the training prompt; sources are still reported
  kTitle,                // the matched product's title before the question
  kTitleAndDescription,  // its title and description before the question
};
// "none", "title", "title_and_description"; parse_grounding throws
// std::invalid_argument naming the value.
std::string_view grounding_name(Grounding grounding);
Grounding parse_grounding(std::string_view name);

struct QaAgentOptions {
  Grounding grounding = Grounding::kNone;   // none keeps the prompt the adapter was tuned on;
                                            // grounding adds facts at the cost of a prompt the
                                            // adapter never saw and more tokens to prefill
  SourceOptions sources{.min_score = 0.6,   // a question adds words to the title: a lower bar
                                            // than a bare title's, still above partial matches
                        .max_sources = 1};  // the product the question is about
  size_t max_description_chars = 1200;      // longer descriptions are cut at a word boundary
                                            // (with "..."): bounds the prompt's length
};

class QaAgent {
 public:
  explicit QaAgent(std::shared_ptr<const Catalog> catalog, QaAgentOptions options = {});

  // The qa request for `question` and the records it is about. Never throws
  // on user text.
  AgentPrompt prompt(std::string_view question) const;

 private:
  std::shared_ptr<const Catalog> catalog_;
  QaAgentOptions options_;
};

// `text` cut to at most `max_chars` bytes at a word boundary, never inside
// a UTF-8 sequence, with "..." appended when cut. Deterministic.
std::string cut_description(std::string_view text, size_t max_chars);

}  // namespace vitrine::agents
