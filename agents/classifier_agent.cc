#include "agents/classifier_agent.h"

#include <fmt/format.h>

#include <stdexcept>

namespace vitrine::agents {

ClassifierAgent::ClassifierAgent(models::TextClassifier classifier,
                                 std::shared_ptr<const Catalog> catalog,
                                 ClassifierAgentOptions options)
    : classifier_(std::move(classifier)), catalog_(std::move(catalog)), options_(options) {
  if (!catalog_) throw std::invalid_argument("classifier agent: no catalogue");
  for (const std::string& label : classifier_->config().labels) {
    try {
      prompts::parse_task(label);
    } catch (const std::invalid_argument&) {
      throw std::invalid_argument(fmt::format(
          "classifier agent: label '{}' is not a task (describe, qa): not a router classifier?",
          label));
    }
  }
}

Route ClassifierAgent::decide(std::string_view text) const {
  // The module is read-only here (no gradients), so concurrent calls are safe.
  const models::Classification c = models::classify(*classifier_.ptr(), text);
  Route route;
  route.confidence = c.confidence;
  route.labels = classifier_->config().labels;
  route.scores = c.scores;
  if (options_.exact_titles) {
    std::vector<catalog::CatalogMatch> titles = catalog_->find_exact_title(text, 1);
    if (!titles.empty()) {
      route.task = Task::kDescribe;
      route.evidence = Evidence::kCatalogueTitle;
      route.title_match = Source{std::move(titles[0].uid), std::move(titles[0].title), 1.0};
      return route;
    }
  }
  if (c.confidence >= options_.min_confidence) {
    route.task = prompts::parse_task(c.label);
    route.evidence = Evidence::kClassifier;
  } else {
    route.task = options_.default_task;
    route.evidence = Evidence::kDefault;
  }
  return route;
}

}  // namespace vitrine::agents
