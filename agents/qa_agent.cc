#include "agents/qa_agent.h"

#include <fmt/format.h>

#include <stdexcept>

namespace vitrine::agents {

std::string cut_description(std::string_view text, size_t max_chars) {
  if (text.size() <= max_chars) return std::string(text);
  size_t end = max_chars;
  // Back off continuation bytes (10xxxxxx), so a UTF-8 sequence stays whole.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  // Back to the last space, unless that would leave nothing.
  const size_t space = text.rfind(' ', end);
  if (space != std::string_view::npos && space > 0) end = space;
  std::string out(text.substr(0, end));
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out + "...";
}

QaAgent::QaAgent(std::shared_ptr<const Catalog> catalog, QaAgentOptions options)
    : catalog_(std::move(catalog)), options_(options) {
  if (!catalog_) throw std::invalid_argument("qa agent: no catalogue");
}

AgentPrompt QaAgent::prompt(std::string_view question,
                            std::span<const models::ChatMessage> history) const {
  AgentPrompt out;
  out.task = Task::kQa;
  out.sources = find_sources(*catalog_, question, options_.sources);
  if (out.sources.empty())
    out.sources = find_sources_in_history(*catalog_, history, options_.sources);
  out.product_known = !out.sources.empty();
  if (!out.product_known || options_.grounding == Grounding::kNone) {
    out.turn = prompts::task_turn(Task::kQa, question);
    return out;
  }
  const Source& best = out.sources.front();
  std::string description;
  if (options_.grounding == Grounding::kTitleAndDescription) {
    if (const auto product = catalog_->get(best.uid)) {
      description = cut_description(product->content, options_.max_description_chars);
    }
  }
  out.turn = prompts::grounded_qa_turn(question, best.title, description);
  out.grounded = true;
  return out;
}

}  // namespace vitrine::agents
