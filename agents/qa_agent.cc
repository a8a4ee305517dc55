#include "agents/qa_agent.h"

#include <fmt/format.h>

#include <stdexcept>

namespace vitrine::agents {

QaAgent::QaAgent(std::shared_ptr<const Catalog> catalog, QaAgentOptions options)
    : catalog_(std::move(catalog)), options_(options) {
  if (!catalog_) throw std::invalid_argument("qa agent: no catalogue");
}

AgentPrompt QaAgent::prompt(std::string_view question, std::span<const models::ChatMessage> history,
                            const prompts::QaFormat& adapter) const {
  AgentPrompt out;
  out.task = Task::kQa;
  out.sources = find_sources(*catalog_, question, options_.sources);
  if (out.sources.empty())
    out.sources = find_sources_in_history(*catalog_, history, options_.sources);
  out.product_known = !out.sources.empty();
  const prompts::QaFormat format = format_for(adapter);
  if (!out.product_known || format.grounding == Grounding::kNone) {
    out.turn = prompts::task_turn(Task::kQa, question);
    return out;
  }
  const Source& best = out.sources.front();
  std::string description;
  if (format.grounding == Grounding::kDescription) {
    if (const auto product = catalog_->get(best.uid)) description = product->content;
  }
  out.turn = prompts::qa_turn(question, format,
                              prompts::Product{.title = best.title, .description = description});
  out.grounded = true;
  return out;
}

prompts::QaFormat QaAgent::format_for(const prompts::QaFormat& adapter) const {
  prompts::QaFormat format = adapter;
  if (options_.grounding) format.grounding = *options_.grounding;
  if (options_.max_description_chars > 0) {
    format.max_description_chars = options_.max_description_chars;
  }
  return format;
}

}  // namespace vitrine::agents
