#include "agents/agent_results.h"

#include "catalog/catalog.h"

namespace vitrine::agents {

std::string_view evidence_name(Evidence evidence) {
  switch (evidence) {
    case Evidence::kClassifier:
      return "classifier";
    case Evidence::kCatalogueTitle:
      return "catalogue title";
    case Evidence::kDefault:
      return "default";
  }
  return "default";
}

std::vector<Source> find_sources(const Catalog& catalog, std::string_view wording,
                                 const SourceOptions& options) {
  std::vector<Source> sources;
  if (options.max_sources <= 0) return sources;
  for (catalog::CatalogMatch& match : catalog.find_by_title(wording, options.max_sources)) {
    if (match.score < options.min_score) break;  // best first: the rest score lower
    sources.push_back(Source{std::move(match.uid), std::move(match.title), match.score});
  }
  return sources;
}

}  // namespace vitrine::agents
