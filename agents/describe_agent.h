// The describe agent: turns a product title into the describe adapter's
// request, exactly the prompt the adapter was tuned on
// (task_turn(kDescribe, title)), and names the catalogue records the title
// is, found by title search.
//
// The prompt never carries catalogue text: the adapter writes a description
// from the title alone, as in training, so a title the catalogue does not
// know is described all the same; its sources then say so (empty,
// product_known false). Not goals: generating the text (the daemon runs the
// model), picking among several products with the same title (all are
// named, best first), resolving a title from earlier messages of a
// conversation: a title names its own product or an unknown one, and
// taking an earlier product for it would describe the wrong thing (the qa
// agent resolves follow-up questions).
#pragma once

#include <memory>
#include <string_view>

#include "agents/agent_options.h"
#include "agents/agent_results.h"
#include "catalog/catalog.h"

namespace vitrine::agents {

class DescribeAgent {
 public:
  explicit DescribeAgent(std::shared_ptr<const Catalog> catalog, DescribeAgentOptions options = {});

  // The describe request for `title` and the records it names. Never throws
  // on user text.
  AgentPrompt prompt(std::string_view title) const;

 private:
  std::shared_ptr<const Catalog> catalog_;
  DescribeAgentOptions options_;
};

}  // namespace vitrine::agents
