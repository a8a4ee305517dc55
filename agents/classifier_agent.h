// The classifier agent: decides, per request, whether a text is a bare
// product title (the describe adapter answers) or a question about a product
// (the qa adapter answers), and says why.
//
// Rules, in order:
//   1. a text that is exactly a catalogue title (Catalog::find_exact_title:
//      up to case, white space and trailing question marks) is a title, even
//      when it reads like a question ("Who Moved My Cheese?");
//   2. otherwise the classifier (models/text_classifier.h, trained on the
//      router task) decides when its confidence reaches min_confidence;
//   3. below that, the configured default route.
// A decision is one catalogue key lookup and one classifier forward pass:
// tens of microseconds (SampleAgentsTest.DecisionsAreFast prints it).
//
// Not goals: finding the product a question is about (QaAgent does), more
// than two routes, learning online from feedback. decide() may be called
// from several threads at once; the catalogue serialises its own calls.
#pragma once

#include <memory>
#include <string_view>

#include "agents/agent_options.h"
#include "agents/agent_results.h"
#include "catalog/catalog.h"
#include "models/text_classifier.h"
#include "prompts/prompts.h"

namespace vitrine::agents {

class ClassifierAgent {
 public:
  // Throws std::invalid_argument when a classifier label is not a task name
  // ("describe", "qa"): a classifier trained for something else.
  ClassifierAgent(models::TextClassifier classifier, std::shared_ptr<const Catalog> catalog,
                  ClassifierAgentOptions options = {});

  Route decide(std::string_view text) const;

  const ClassifierAgentOptions& options() const { return options_; }

 private:
  models::TextClassifier classifier_;
  std::shared_ptr<const Catalog> catalog_;
  ClassifierAgentOptions options_;
};

}  // namespace vitrine::agents
