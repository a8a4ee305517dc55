// What the agents hand the daemon: plain structs (a route, the catalogue
// records an answer is about, the prompt to generate from) that router/ maps
// to its protobuf messages. No protobuf, gRPC or model state here.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "models/tokenizer/chat_format.h"
#include "prompts/prompts.h"

namespace vitrine::catalog {
class Catalog;
}  // namespace vitrine::catalog

namespace vitrine::agents {

// The agents look products up in the catalogue (catalog/, which keeps SQLite
// to itself).
using catalog::Catalog;
// The tasks are the prompt formats' (prompts/), shared with training.
using prompts::Task;
using prompts::task_name;

// Why the classifier agent chose its route.
enum class Evidence {
  kClassifier,      // the classifier was confident enough
  kCatalogueTitle,  // the text is exactly a catalogue title: describe it
  kNearTitle,       // the text is a catalogue title as typed (nothing around it): describe it
  kDefault,         // the classifier was unsure: the configured default route
};
// "classifier", "catalogue title", "near catalogue title", "default".
std::string_view evidence_name(Evidence evidence);

// Where the product an answer is about was named.
enum class SourceEvidence {
  kText,         // in the request's own text
  kEarlierTurn,  // the text named none: an earlier message of the conversation did
};
// "text", "earlier turn".
std::string_view source_evidence_name(SourceEvidence evidence);

// A catalogue record an answer is about.
struct Source {
  std::string uid;
  std::string title;
  double score = 0;  // CatalogMatch::score in [0, 1]; 1 for an exact title
  SourceEvidence evidence = SourceEvidence::kText;
  int history_index = -1;  // with kEarlierTurn: the index of that earlier message
};

// The classifier agent's decision for one text.
struct Route {
  Task task = Task::kQa;  // the adapter that answers
  Evidence evidence = Evidence::kDefault;
  double confidence = 0;              // the classifier's probability of its label (even when
                                      // evidence is not the classifier)
  std::vector<std::string> labels;    // the classifier's labels, in its order
  std::vector<double> scores;         // the classifier's probability of each label
  std::optional<Source> title_match;  // the catalogue record, when evidence is kCatalogueTitle
                                      // or kNearTitle
};

// What the describe and qa agents return: the request to generate from and
// the records it is about.
struct AgentPrompt {
  Task task = Task::kQa;        // the adapter to generate with
  models::ChatTurn turn;        // render with models::render_chat_prompt in the model's family
  bool grounded = false;        // the turn carries catalogue text, so it differs from training's
  std::vector<Source> sources;  // best first; empty when no product is known
  bool product_known = false;   // false: no catalogue record matched well enough (sources empty)
};

// How an agent picks its sources from a title search.
struct SourceOptions {
  double min_score = 0.6;  // matches below are not this product: a higher bar gives fewer wrong
                           // sources and more "unknown product" answers
  int max_sources = 3;     // records returned at most, best first
};

// The records of catalog.find_by_title(wording) that score at least
// options.min_score, at most options.max_sources, best first.
std::vector<Source> find_sources(const Catalog& catalog, std::string_view wording,
                                 const SourceOptions& options);

// The sources of the latest message of `history` (user or assistant, oldest
// first) whose text names a product, by find_sources; evidence kEarlierTurn
// and that message's index. Empty when none does. For a follow-up that
// names no product ("and who wrote it?"): the conversation is about the
// product named last.
std::vector<Source> find_sources_in_history(const Catalog& catalog,
                                            std::span<const models::ChatMessage> history,
                                            const SourceOptions& options);

}  // namespace vitrine::agents
