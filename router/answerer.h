// The daemon's answers, on plain structs: no gRPC, no protobuf. ChatService
// (router/chat_service.h) converts its messages to these and back; tests
// drive the routing policy here directly.
//
//   plan()     validates a request and decides everything before the model
//              runs: the route (the classifier agent, or as forced), the
//              experiment arm, the adapter version (held by a lease until
//              the answer ends), the agent's prompt as tokens, and the
//              catalogue records the answer is about. The qa agent's
//              adapter is options().qa_adapter, asked in the prompt format
//              it was trained with (closed-book or grounded,
//              LoadedAdapter::prompt_format).
//   run()      submits a plan to the engine, which batches it with every
//              other running request, and waits for it on the calling
//              thread: streamed text goes to a callback on that thread, and
//              a cancellation check the caller supplies is polled there.
//   compare()  the same request through no adapter and through the
//              route's adapter, both submitted at once so they share
//              batches, both waited for on the calling thread.
//
// Errors are the libraries' exceptions, mapped to status codes at the edge
// (protos/status.h): std::invalid_argument for a bad request,
// FailedPreconditionError (common/errors.h) when no adapter serves a forced
// route or a pinned version is not loaded, ResourceExhaustedError when the
// engine's queue is full. All methods may be called from many threads.
//
// Conversations. A request may carry the turns before its text
// (Request::history, at most max_history_turns turns and max_history_bytes
// bytes). The classifier routes the current text alone; the agent's turn
// for it is rendered after the earlier user and assistant turns, in the
// model's chat format. When that prompt would pass the engine's
// max_prompt_tokens, the oldest turns are left out first, the kept ones
// starting at a user turn (an answer without its question misleads); the
// current text and the system prompt are never left out, and the answer
// counts what was used and dropped. The qa agent takes a question that
// names no product to be about the latest earlier turn's product.
//
// The client's system turns are joined and appended, after a blank line, to
// the task's own system prompt (prompts::task_turn), on every route. The
// adapters were tuned with that prompt alone, so it stays first and whole:
// replacing it would ask an adapter in words it never saw. Appended, a
// shopper's or an integrator's instructions ("answer in Portuguese", "be
// brief") still reach the model. Base gets the same prompt as the adapters
// rather than the client's alone, so Compare and experiments stay an A/B of
// the weights, not of two prompts.
//
// Unknown products. A question the qa route finds no product for (no
// catalogue title matches it well enough and no earlier turn names one) is
// not given to a model when routing.unknown_product is say (the default):
// plan() sets Plan::fixed_text to the unknown-product agent's sentence
// (agents/unknown_product_agent.h: in the question's language, naming up to
// unknown_closest titles nearest to its wording), and run() answers with it
// in one piece, finish_reason "stop", no tokens, no adapter, no experiment
// arm, model kNoModel. Compare gives both sides that answer. The closest
// titles are in Answer::closest, never in the sources: the answer is about
// none of them. With generate the route's model answers as for any
// question, and closest is filled all the same. An earlier answer of that
// kind is left out of the search for the conversation's product: a
// follow-up to it is about the unknown product, not an offered title.
// Titles (route describe)
// are described as they stand, known or not: writing from a title is the
// describe adapter's task.
//
// Not goals: authentication, admission and draining, metrics of requests
// and the response log (the edge's); remembering conversations (the client
// sends them); summarising the turns that do not fit; priorities.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agents/classifier_agent.h"
#include "agents/describe_agent.h"
#include "agents/qa_agent.h"
#include "agents/unknown_product_agent.h"
#include "models/engine.h"
#include "models/tokenizer/chat_format.h"
#include "router/adapter_registry.h"
#include "router/experiments.h"
#include "router/router_config.h"

namespace vitrine::router {

// The route a request asks for (the values of vitrine.v1.Route).
enum class RouteAsked : int {
  kAuto = 0,      // the classifier agent decides
  kDescribe = 1,  // a product title: the describe agent, through its adapter
  kQa = 2,        // a question: the qa agent, through its adapter
  kBase = 3,      // the classifier picks the prompt; the base model answers
};
// "ROUTE_AUTO", "ROUTE_DESCRIBE", "ROUTE_QA", "ROUTE_BASE" (as the API names them).
std::string_view route_asked_name(RouteAsked route);

// A request's own generation settings; 0 means "the daemon's default".
struct GenerationSettings {
  int max_new_tokens = 0;         // 0: AnswererOptions::default_new_tokens; more than the
                                  // engine's max_new_tokens means up to it; < 0 is refused
  double temperature = 0;         // 0: greedy; at most 10
  int top_k = 0;                  // 0: all tokens
  double top_p = 0;               // 0: 1 (all); at most 1
  double repetition_penalty = 0;  // 0: AnswererOptions::repetition_penalty
  uint64_t seed = 0;              // sampling seed
};

// Who wrote an earlier turn (the values of vitrine.v1.Turn.Role; 0, unspecified,
// is refused).
enum class TurnRole : int {
  kSystem = 1,     // the client's instructions: appended to the task's system prompt
  kUser = 2,       // the shopper
  kAssistant = 3,  // an earlier answer
};

// One earlier turn of a conversation.
struct Turn {
  TurnRole role = TurnRole::kUser;
  std::string text;  // valid UTF-8; may be empty
};

struct Request {
  std::string text;           // a title or a question; valid UTF-8, not blank
  std::vector<Turn> history;  // the conversation before `text`, oldest first
  RouteAsked route = RouteAsked::kAuto;
  std::string user_id;  // experiments: the same user always gets the same arm
  GenerationSettings generation;
  // Past it the answer ends with finish_reason "deadline" (max: none).
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

struct RouteTaken {
  std::string agent;                 // describe or qa
  std::string adapter;               // describe, qa, or "" for the base model
  int64_t adapter_version = 0;       // 0 for the base model
  double classifier_confidence = 0;  // 0 when the route was forced
  std::string evidence;              // classifier, catalogue title, default or forced
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

struct Timings {
  double queue_ms = 0;        // submitted -> prefill started
  double first_token_ms = 0;  // submitted -> first token
  double total_ms = 0;        // submitted -> finished
  double route_ms = 0;        // the classifier agent's decision (catalogue lookups and the
                              // classifier), before submitting; 0 when the route was forced
};

// Answer::model when no model answers (an unknown product, said).
inline constexpr std::string_view kNoModel = "none";

struct Answer {
  std::string response_id;  // unique; the key of the response log and of Feedback
  std::string model;        // the model that answers: describe, qa, base, or kNoModel
  RouteTaken route;
  std::vector<agents::Source> sources;  // best first; empty when no product is known; a
                                        // source's history_index is Request::history's
  bool product_found = false;
  std::vector<agents::Source> closest;  // qa without a product: the titles nearest to the
                                        // text's wording, best first (not sources: the answer
                                        // is about none of them); empty otherwise
  int history_turns_used = 0;           // earlier user and assistant turns in the prompt
  int history_turns_dropped = 0;        // the oldest ones left out to fit max_prompt_tokens
  std::string experiment;               // the experiment and arm that chose the model ("" if none)
  std::string arm;
  // Filled by run(); finish_reason stays empty until the engine has ended it.
  std::string text;
  std::string finish_reason;  // stop, length, cancelled or deadline
  Usage usage;
  Timings timings;
};

// A request ready for the engine.
struct Plan {
  Answer answer;                               // all but the text, finish reason, usage and timings
  models::EngineRequest request;               // prompt ids, adapter slot, options, deadline
  std::shared_ptr<const LoadedAdapter> lease;  // the adapter version, held until the end
  std::string fixed_text;  // set: the whole answer, no model runs (an unknown product, said);
                           // the request then has no prompt
};

// Compare's two plans: the same prompt, sources and settings.
struct ComparePlan {
  Plan base;   // no adapter, no experiment
  Plan tuned;  // the route's current adapter, no experiment
};

struct Comparison {
  Answer base;
  Answer tuned;
};

// What the caller hears of a run, on its own thread. Both may be empty.
struct RunHooks {
  // The answer's text as it comes, in order (pieces joined while the last
  // was handled); false (say, the client is gone) cancels the request.
  // Not called by compare.
  std::function<bool(std::string_view text)> on_text;
  // Polled about every 20 ms while the engine runs the request; true
  // cancels it (finish_reason "cancelled").
  std::function<bool()> cancelled;
};

// What the daemon loaded; the answerer reads it, never changes it.
struct AnswererParts {
  std::shared_ptr<const models::Tokenizer> tokenizer;
  models::ChatFamily family = models::ChatFamily::kPlain;
  std::shared_ptr<models::Engine> engine;
  std::shared_ptr<AdapterRegistry> registry;
  std::shared_ptr<const agents::ClassifierAgent> classifier;
  std::shared_ptr<const agents::DescribeAgent> describe;
  std::shared_ptr<const agents::QaAgent> qa;
  // May be null: no closest titles, and a question about no known product is
  // answered by the model (as routing.unknown_product: generate).
  std::shared_ptr<const agents::UnknownProductAgent> unknown;
  std::shared_ptr<const Experiments> experiments;  // may be null: no experiments
};

// Called on the engine's thread with the time between two tokens of one
// answer, in seconds (for a histogram). Keep it short.
using TokenGapObserver = std::function<void(double seconds)>;

class Answerer {
 public:
  explicit Answerer(AnswererParts parts, AnswererOptions options = {},
                    TokenGapObserver on_token_gap = {});

  // Validates `request` and decides route, arm, adapter, prompt and sources.
  Plan plan(const Request& request) const;
  // Runs `plan` on the engine until it ends (stop, length, deadline, or
  // cancelled by `hooks`). Throws what Engine::submit throws, or the error
  // the engine ended the request with.
  Answer run(Plan plan, const RunHooks& hooks = {}) const;
  Answer ask(const Request& request, const RunHooks& hooks = {}) const {
    return run(plan(request), hooks);
  }

  // The tuned plan as plan() makes it, and its base twin. Throws
  // std::invalid_argument for route base, FailedPreconditionError when no
  // adapter would answer the tuned side (an unknown product said needs none:
  // both sides are that answer).
  ComparePlan plan_compare(const Request& request) const;
  // Runs both at once and waits for both.
  Comparison run_compare(ComparePlan plan, const RunHooks& hooks = {}) const;
  Comparison compare(const Request& request, const RunHooks& hooks = {}) const {
    return run_compare(plan_compare(request), hooks);
  }

  // The classifier agent's decision for `text` (checked as plan() checks it).
  agents::Route classify(const std::string& text) const;

  const AnswererParts& parts() const { return parts_; }
  const AnswererOptions& options() const { return options_; }

 private:
  models::GenerationOptions generation_options(const GenerationSettings& settings) const;
  prompts::Task choose_route(const Request& request, Answer& answer) const;
  void choose_model(const Request& request, prompts::Task task, Plan& plan) const;
  void add_prompt(const Request& request, prompts::Task task, Plan& plan) const;
  // The adapter that answers for `agent` (qa: options().qa_adapter).
  const std::string& adapter_name(const std::string& agent) const;
  prompts::QaFormat qa_format(const LoadedAdapter* lease) const;
  std::vector<int64_t> stop_ids(const Plan& plan) const;
  // A question about no known product: its closest titles, and with
  // unknown_product say the fixed answer; true when no model is to run.
  bool say_unknown_product(const Request& request, Plan& plan) const;
  // The prompt's token ids for `turn`, leaving out as few of its oldest
  // history messages as fit max_prompt_tokens; returns how many were left out.
  size_t encode_within_limit(models::ChatTurn turn, std::vector<int32_t>& ids) const;
  // Submits the plans, waits for all, and fills their answers.
  void execute(const std::vector<Plan*>& plans, const RunHooks& hooks) const;

  AnswererParts parts_;
  AnswererOptions options_;
  TokenGapObserver on_token_gap_;
};

}  // namespace vitrine::router
