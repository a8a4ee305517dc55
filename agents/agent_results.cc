#include "agents/agent_results.h"

#include "catalog/catalog.h"

namespace vitrine::agents {

std::string_view evidence_name(Evidence evidence) {
  switch (evidence) {
    case Evidence::kClassifier:
      return "classifier";
    case Evidence::kCatalogueTitle:
      return "catalogue title";
    case Evidence::kNearTitle:
      return "near catalogue title";
    case Evidence::kDefault:
      return "default";
  }
  return "default";
}

std::string_view source_evidence_name(SourceEvidence evidence) {
  return evidence == SourceEvidence::kEarlierTurn ? "earlier turn" : "text";
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

std::vector<Source> find_sources_in_history(const Catalog& catalog,
                                            std::span<const models::ChatMessage> history,
                                            const SourceOptions& options) {
  for (size_t i = history.size(); i-- > 0;) {
    std::vector<Source> sources = find_sources(catalog, history[i].text, options);
    if (sources.empty()) continue;
    for (Source& s : sources) {
      s.evidence = SourceEvidence::kEarlierTurn;
      s.history_index = static_cast<int>(i);
    }
    return sources;
  }
  return {};
}

}  // namespace vitrine::agents
