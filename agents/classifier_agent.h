// The classifier agent: decides, per request, whether a text is a bare
// product title (the describe adapter answers) or a question about a product
// (the qa adapter answers), and says why.
//
// Rules, in order:
//   1. a text that is exactly a catalogue title (Catalog::find_exact_title:
//      up to case, white space and trailing question marks) is a title, even
//      when it reads like a question ("Why Am I Afraid to Tell You Who I Am?");
//   2. a text that is nothing but a catalogue title as users type titles
//      ("why am i afriad to tell you who i am", "city of djinns", "the
//      mauritius comand") is a title too: Catalog::find_title_in_text finds
//      the title with no word of the text before or after it;
//   3. otherwise the classifier (models/text_classifier.h) decides when its
//      confidence reaches min_confidence. A classifier trained with
//      catalogue evidence is told where the title sits in the text
//      (title_evidence below): "does <title> have maps?" is a question
//      whatever the title says, and so is "<title>, is it any good?";
//   4. below that, the configured default route.
// A decision is two catalogue lookups and one classifier forward pass:
// tens of microseconds on the sample's catalogue (the routing evaluation
// test prints the p99, `vitrine bench` the daemon's).
//
// Not goals: finding the product a question is about (QaAgent does), more
// than two routes, learning online from feedback. decide() may be called
// from several threads at once; the catalogue gives each call a connection
// of its own.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "agents/agent_options.h"
#include "agents/agent_results.h"
#include "catalog/catalog.h"
#include "models/text_classifier.h"
#include "prompts/prompts.h"

namespace vitrine::agents {

// The title find_title_in_text locates in `text` when the text names it
// well enough to count: at least half of the (main) title's identifying
// words, and two of them unless it has only one. "battery life of the
// zq-9000" sharing "life" with a title is not evidence. nullopt otherwise.
std::optional<catalog::TitleInText> typed_title(const Catalog& catalog, std::string_view text);

// typed_title as the classifier reads it. Routing and training (`vitrine
// train` hands it to training::train_classifier) both use this one
// function, so the classifier learns from the evidence it will be given.
models::TitleEvidence title_evidence(const Catalog& catalog, std::string_view text);

// title_evidence over the catalogue file `catalog_file`, opened once and
// kept open by the function: what `vitrine train` hands the classifier's
// training (training::TitleEvidenceFinder). Throws std::runtime_error naming
// the file when it is no catalogue.
std::function<models::TitleEvidence(std::string_view)> title_evidence_finder(
    const std::filesystem::path& catalog_file);

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
