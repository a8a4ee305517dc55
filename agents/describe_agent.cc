#include "agents/describe_agent.h"

#include <stdexcept>

namespace vitrine::agents {

DescribeAgent::DescribeAgent(std::shared_ptr<const Catalog> catalog, DescribeAgentOptions options)
    : catalog_(std::move(catalog)), options_(options) {
  if (!catalog_) throw std::invalid_argument("describe agent: no catalogue");
}

AgentPrompt DescribeAgent::prompt(std::string_view title) const {
  AgentPrompt out;
  out.task = Task::kDescribe;
  out.turn = prompts::task_turn(Task::kDescribe, title);
  out.sources = find_sources(*catalog_, title, options_.sources);
  out.product_known = !out.sources.empty();
  return out;
}

}  // namespace vitrine::agents
