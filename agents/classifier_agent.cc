#include "agents/classifier_agent.h"

#include <fmt/format.h>

#include <stdexcept>

namespace vitrine::agents {
namespace {

// typed_title's bar (see the header).
constexpr double kMinCoverage = 0.5;
constexpr int kMinWords = 2;

// Rule 2: the whole text is the title, from its first identifying word on.
bool is_near_title(const catalog::TitleInText& t) {
  return t.words_before == 0 && t.words_after == 0 && t.from_start;
}

models::TitleEvidence evidence_of(const catalog::TitleInText& t) {
  return {.found = true, .begin = t.byte_begin, .end = t.byte_end, .coverage = t.coverage};
}

}  // namespace

std::optional<catalog::TitleInText> typed_title(const Catalog& catalog, std::string_view text) {
  std::optional<catalog::TitleInText> t = catalog.find_title_in_text(text);
  if (!t || t->coverage < kMinCoverage) return std::nullopt;
  // One word is enough only when it is the whole (main) title: "Ratburger",
  // "Tell Me Why, Mummy".
  if (t->matched_words < kMinWords && t->coverage < 1.0) return std::nullopt;
  return t;
}

models::TitleEvidence title_evidence(const Catalog& catalog, std::string_view text) {
  const std::optional<catalog::TitleInText> t = typed_title(catalog, text);
  return t ? evidence_of(*t) : models::TitleEvidence{};
}

std::function<models::TitleEvidence(std::string_view)> title_evidence_finder(
    const std::filesystem::path& catalog_file) {
  auto catalog = std::make_shared<const Catalog>(catalog_file);
  return [catalog](std::string_view text) { return title_evidence(*catalog, text); };
}

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
  const models::TextClassifierConfig& config = classifier_->config();
  Route route;
  route.labels = config.labels;
  const auto described = [&](Evidence evidence, Source source) {
    route.task = Task::kDescribe;
    route.evidence = evidence;
    route.title_match = std::move(source);
  };
  if (options_.exact_titles) {
    std::vector<catalog::CatalogMatch> titles = catalog_->find_exact_title(text, 1);
    if (!titles.empty()) {
      described(Evidence::kCatalogueTitle,
                Source{std::move(titles[0].uid), std::move(titles[0].title), 1.0});
    }
  }
  std::optional<catalog::TitleInText> typed;
  if (!route.title_match && (options_.near_titles || config.title_evidence)) {
    typed = typed_title(*catalog_, text);
    if (typed && options_.near_titles && is_near_title(*typed)) {
      described(Evidence::kNearTitle, Source{typed->uid, typed->title, typed->search_score});
    }
  }
  // The module is read-only here (no gradients), so concurrent calls are safe.
  const models::TitleEvidence evidence =
      typed && config.title_evidence ? evidence_of(*typed) : models::TitleEvidence{};
  const models::Classification c = models::classify(*classifier_.ptr(), text, evidence);
  route.confidence = c.confidence;
  route.scores = c.scores;
  if (route.title_match) return route;
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
