#include "router/answerer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <random>
#include <stdexcept>

#include "common/errors.h"
#include "common/strings.h"
#include "common/utf8.h"

namespace vitrine::router {
namespace {

using Clock = std::chrono::steady_clock;

std::string new_response_id() {
  static std::mutex mutex;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mutex);
  return fmt::format("r-{:016x}{:08x}", rng(), static_cast<uint32_t>(rng()));
}

// A user id names a person or a session for experiments and the log.
constexpr size_t kMaxUserIdBytes = 256;

void check_text(const std::string& text, int max_bytes) {
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    throw std::invalid_argument("text: empty");
  }
  if (text.size() > static_cast<size_t>(max_bytes)) {
    throw std::invalid_argument(
        fmt::format("text: {} bytes, more than the limit of {}", text.size(), max_bytes));
  }
  if (!utf8::is_valid(text)) throw std::invalid_argument("text: not valid UTF-8");
}

// Each turn's role and text, and the limits on their number and bytes.
void check_history(const std::vector<Turn>& history, const AnswererOptions& options) {
  if (history.size() > static_cast<size_t>(options.max_history_turns)) {
    throw std::invalid_argument(
        fmt::format("history: {} turns, more than the limit of {} (engine.max_history_turns)",
                    history.size(), options.max_history_turns));
  }
  size_t bytes = 0;
  for (size_t i = 0; i < history.size(); ++i) {
    const Turn& turn = history[i];
    if (turn.role != TurnRole::kSystem && turn.role != TurnRole::kUser &&
        turn.role != TurnRole::kAssistant) {
      throw std::invalid_argument(
          fmt::format("history[{}].role: {} is not ROLE_SYSTEM, ROLE_USER or ROLE_ASSISTANT", i,
                      static_cast<int>(turn.role)));
    }
    bytes += turn.text.size();
    if (bytes > static_cast<size_t>(options.max_history_bytes)) {
      throw std::invalid_argument(fmt::format(
          "history[{}].text: the history's text reaches {} bytes here, more than the limit of {} "
          "(engine.max_history_bytes)",
          i, bytes, options.max_history_bytes));
    }
    if (!utf8::is_valid(turn.text)) {
      throw std::invalid_argument(fmt::format("history[{}].text: not valid UTF-8", i));
    }
  }
}

// A request's history as the prompt takes it: the system turns joined, the
// user and assistant turns in order with their indices in the request.
struct Conversation {
  std::string system;
  std::vector<models::ChatMessage> messages;
  std::vector<int> request_index;  // of each message, in Request::history
};

Conversation conversation_of(const std::vector<Turn>& history) {
  Conversation out;
  for (size_t i = 0; i < history.size(); ++i) {
    const Turn& turn = history[i];
    if (turn.role == TurnRole::kSystem) {
      if (!turn.text.empty()) out.system += (out.system.empty() ? "" : "\n\n") + turn.text;
      continue;
    }
    out.messages.push_back(
        {turn.role == TurnRole::kUser ? models::ChatRole::kUser : models::ChatRole::kAssistant,
         turn.text});
    out.request_index.push_back(static_cast<int>(i));
  }
  return out;
}

// The messages the qa agent searches for the conversation's product: the
// daemon's own unknown-product answers blanked in place (the titles they
// offer are not what the conversation is about; indices stay the same).
std::vector<models::ChatMessage> product_search(const std::vector<models::ChatMessage>& messages) {
  std::vector<models::ChatMessage> out = messages;
  for (models::ChatMessage& m : out) {
    if (m.role == models::ChatRole::kAssistant && agents::said_unknown_product(m.text)) {
      m.text.clear();
    }
  }
  return out;
}

// The task's system prompt, then the client's (see answerer.h for why).
std::string system_prompt(const std::string& task_system, const std::string& client_system) {
  if (client_system.empty()) return task_system;
  if (task_system.empty()) return client_system;
  return task_system + "\n\n" + client_system;
}

void check_route(RouteAsked route) {
  switch (route) {
    case RouteAsked::kAuto:
    case RouteAsked::kDescribe:
    case RouteAsked::kQa:
    case RouteAsked::kBase:
      return;
  }
  throw std::invalid_argument(fmt::format("route: unknown value {}", static_cast<int>(route)));
}

// What the calling thread waits for: the text pieces the engine's thread
// hands over (for streaming) and the end of each request, so the caller
// wakes at once for either without blocking the engine.
class Waiter {
 public:
  void push(std::string_view text) {
    {
      std::lock_guard lock(mutex_);
      pieces_.append(text);
    }
    changed_.notify_one();
  }
  void end() {
    {
      std::lock_guard lock(mutex_);
      ++ended_;
    }
    changed_.notify_one();
  }
  // Waits up to `timeout` for text or an end; takes the text so far (all
  // pieces joined: one piece for what came while the last was handled)
  // and says how many requests have ended.
  std::string take(std::chrono::milliseconds timeout, size_t& ended) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return ended_ > ended || !pieces_.empty(); });
    ended = ended_;
    return std::exchange(pieces_, {});
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string pieces_;
  size_t ended_ = 0;
};

// One request's token clock, on the engine's thread.
struct TokenClock {
  Clock::time_point last;
  int64_t tokens = 0;
  bool text_started = false;  // an answer's leading whitespace is not streamed
};

void fill_result(const models::EngineResult& result, Answer& answer) {
  // The model's first piece may carry the space it has after the prompt
  // (" The"); an answer starts at its first word.
  answer.text = trim_start(result.generation.text);
  answer.finish_reason = result.generation.finish_reason;
  answer.usage = {.prompt_tokens = result.timings.prompt_tokens,
                  .completion_tokens = result.timings.generated_tokens};
  answer.timings.queue_ms = result.timings.queue_ms;  // route_ms was set when planning
  answer.timings.first_token_ms = result.timings.first_token_ms;
  answer.timings.total_ms = result.timings.total_ms;
}

// A plan's fixed text as its whole answer, handed to on_text in one piece:
// finish_reason "stop", or "cancelled" when the caller has gone.
Answer answer_fixed(Plan plan, const RunHooks& hooks) {
  Answer& answer = plan.answer;
  answer.text = std::move(plan.fixed_text);
  const bool gone =
      (hooks.cancelled && hooks.cancelled()) || (hooks.on_text && !hooks.on_text(answer.text));
  answer.finish_reason = gone ? "cancelled" : "stop";
  return std::move(answer);
}

}  // namespace

std::string_view route_asked_name(RouteAsked route) {
  switch (route) {
    case RouteAsked::kAuto:
      return "ROUTE_AUTO";
    case RouteAsked::kDescribe:
      return "ROUTE_DESCRIBE";
    case RouteAsked::kQa:
      return "ROUTE_QA";
    case RouteAsked::kBase:
      return "ROUTE_BASE";
  }
  return "ROUTE_UNKNOWN";
}

Answerer::Answerer(AnswererParts parts, AnswererOptions options, TokenGapObserver on_token_gap)
    : parts_(std::move(parts)), options_(options), on_token_gap_(std::move(on_token_gap)) {
  if (!parts_.tokenizer || !parts_.engine || !parts_.registry || !parts_.classifier ||
      !parts_.describe || !parts_.qa) {
    throw std::invalid_argument(
        "answerer: tokenizer, engine, registry, classifier, describe and qa agents are needed");
  }
}

// The request's own settings over the daemon's defaults, within its limits.
models::GenerationOptions Answerer::generation_options(const GenerationSettings& s) const {
  if (s.max_new_tokens < 0) {
    throw std::invalid_argument(
        fmt::format("generation.max_new_tokens: {} is negative", s.max_new_tokens));
  }
  if (!std::isfinite(s.temperature) || !std::isfinite(s.top_p) ||
      !std::isfinite(s.repetition_penalty)) {
    throw std::invalid_argument(fmt::format(
        "generation: temperature ({}), top_p ({}) and repetition_penalty ({}) must be finite",
        s.temperature, s.top_p, s.repetition_penalty));
  }
  if (s.temperature < 0 || s.temperature > 10) {
    throw std::invalid_argument(
        fmt::format("generation.temperature: {} is not in 0..10", s.temperature));
  }
  if (s.top_k < 0) throw std::invalid_argument("generation.top_k: expected >= 0");
  if (s.top_p < 0 || s.top_p > 1) {
    throw std::invalid_argument(fmt::format("generation.top_p: {} is not in 0..1", s.top_p));
  }
  if (s.repetition_penalty < 0) {
    throw std::invalid_argument("generation.repetition_penalty: expected >= 0");
  }
  models::GenerationOptions o;
  // Chat clients send 1024-4096 whatever the server: a request for more
  // than the limit gets up to the limit, ending with finish_reason "length".
  const int limit = parts_.engine->options().max_new_tokens;
  o.max_new_tokens =
      std::min(s.max_new_tokens > 0 ? s.max_new_tokens : options_.default_new_tokens, limit);
  o.temperature = s.temperature;
  o.top_k = s.top_k;
  o.top_p = s.top_p > 0 ? s.top_p : 1.0;
  o.repetition_penalty =
      s.repetition_penalty > 0 ? s.repetition_penalty : options_.repetition_penalty;
  o.seed = s.seed;
  // eos_ids: plan() sets them once the answering adapter is known (stop_ids()).
  o.stop_strings = models::chat_stop_strings(parts_.family);
  return o;
}

// Which agent answers: the classifier's choice (auto, base), timed, or the
// forced one.
prompts::Task Answerer::choose_route(const Request& request, Answer& answer) const {
  RouteTaken& taken = answer.route;
  prompts::Task task = prompts::Task::kQa;
  if (request.route == RouteAsked::kAuto || request.route == RouteAsked::kBase) {
    const Clock::time_point start = Clock::now();
    const agents::Route decided = parts_.classifier->decide(request.text);
    answer.timings.route_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    task = decided.task;
    taken.classifier_confidence = decided.confidence;
    taken.evidence = std::string(agents::evidence_name(decided.evidence));
  } else {
    task = request.route == RouteAsked::kDescribe ? prompts::Task::kDescribe : prompts::Task::kQa;
    taken.evidence = "forced";
  }
  taken.agent = std::string(prompts::task_name(task));
  return task;
}

// Through which adapter: an experiment's arm may send the request to the
// base model or pin a version; otherwise the current version of the
// agent's adapter, when there is one.
void Answerer::choose_model(const Request& request, prompts::Task task, Plan& plan) const {
  Answer& answer = plan.answer;
  const std::string& agent = answer.route.agent;
  bool tuned = request.route != RouteAsked::kBase;
  int64_t pinned = 0;
  if (tuned && parts_.experiments != nullptr) {
    if (const auto arm = parts_.experiments->assign(agent, request.user_id, answer.response_id)) {
      answer.experiment = arm->experiment;
      answer.arm = arm->arm;
      if (arm->adapter_version < 0) tuned = false;
      pinned = arm->adapter_version;
    }
  }
  if (tuned) {
    plan.lease = parts_.registry->current(adapter_name(agent));
    if (plan.lease == nullptr && request.route != RouteAsked::kAuto) {
      throw FailedPreconditionError(
          fmt::format("no '{}' adapter is loaded (route {} was asked for)", adapter_name(agent),
                      route_asked_name(request.route)));
    }
    if (plan.lease != nullptr && pinned > 0 && plan.lease->version != pinned) {
      throw FailedPreconditionError(
          fmt::format("experiment '{}' arm '{}' pins {}/v{}, but v{} is loaded", answer.experiment,
                      answer.arm, agent, pinned, plan.lease->version));
    }
  }
  if (plan.lease != nullptr) {
    answer.route.adapter = plan.lease->name;
    answer.route.adapter_version = plan.lease->version;
    plan.request.adapter_slot = plan.lease->slot;
  }
  answer.model = plan.lease != nullptr ? std::string(prompts::task_name(task)) : "base";
}

const std::string& Answerer::adapter_name(const std::string& agent) const {
  return agent == prompts::task_name(prompts::Task::kQa) ? options_.qa_adapter : agent;
}

// The qa format the answering adapter was trained with; without one (the
// base model answers), the current qa adapter's, so base and tuned are
// asked alike.
prompts::QaFormat Answerer::qa_format(const LoadedAdapter* lease) const {
  if (lease != nullptr) return lease->prompt_format.qa;
  const auto current = parts_.registry->current(options_.qa_adapter);
  return current != nullptr ? current->prompt_format.qa : prompts::QaFormat{};
}

// The tokenizer's EOS and the end token the answering adapter learnt; the
// base model stops where the agent's adapter would (that token is what the
// base learnt to end with), so base and tuned answers end alike.
std::vector<int64_t> Answerer::stop_ids(const Plan& plan) const {
  std::shared_ptr<const LoadedAdapter> adapter = plan.lease;
  if (adapter == nullptr) adapter = parts_.registry->current(adapter_name(plan.answer.route.agent));
  return prompts::stop_ids(adapter != nullptr ? adapter->prompt_format : prompts::PromptFormat{},
                           *parts_.tokenizer);
}

// The agent's prompt, after the conversation's earlier turns, as token ids,
// and the records the answer is about.
void Answerer::add_prompt(const Request& request, prompts::Task task, Plan& plan) const {
  const Conversation conversation = conversation_of(request.history);
  agents::AgentPrompt prompt =
      task == prompts::Task::kDescribe
          ? parts_.describe->prompt(request.text)
          : parts_.qa->prompt(request.text, product_search(conversation.messages),
                              qa_format(plan.lease.get()));
  for (agents::Source& source : prompt.sources) {
    if (source.history_index >= 0) {
      source.history_index = conversation.request_index.at(source.history_index);
    }
  }
  plan.answer.sources = prompt.sources;
  plan.answer.product_found = prompt.product_known;
  if (task == prompts::Task::kQa && !prompt.product_known && say_unknown_product(request, plan)) {
    return;
  }
  models::ChatTurn turn = prompt.turn;
  turn.system = system_prompt(turn.system, conversation.system);
  turn.history = conversation.messages;
  std::vector<int32_t> ids;
  const size_t dropped = encode_within_limit(std::move(turn), ids);
  plan.answer.history_turns_dropped = static_cast<int>(dropped);
  plan.answer.history_turns_used = static_cast<int>(conversation.messages.size() - dropped);
  plan.request.prompt.assign(ids.begin(), ids.end());
}

bool Answerer::say_unknown_product(const Request& request, Plan& plan) const {
  if (parts_.unknown == nullptr) return false;
  const agents::UnknownProductAgent& unknown = *parts_.unknown;
  Answer& answer = plan.answer;
  if (unknown.options().answer == agents::UnknownProduct::kGenerate) {
    answer.closest = unknown.closest(request.text);
    return false;
  }
  agents::UnknownProductAnswer said = unknown.answer(request.text);
  answer.closest = std::move(said.closest);
  answer.model = std::string(kNoModel);
  plan.fixed_text = std::move(said.text);
  return true;
}

size_t Answerer::encode_within_limit(models::ChatTurn turn, std::vector<int32_t>& ids) const {
  const size_t limit = static_cast<size_t>(parts_.engine->options().max_prompt_tokens);
  const std::vector<models::ChatMessage> all = std::move(turn.history);
  auto encode_from = [&](size_t first) {
    turn.history.assign(all.begin() + static_cast<std::ptrdiff_t>(first), all.end());
    return parts_.tokenizer->encode(models::render_chat_prompt(parts_.family, turn), true);
  };
  ids = encode_from(0);
  if (ids.size() <= limit || all.empty()) return 0;
  // Where the kept turns may start: at a user turn, or nowhere (the last
  // resort; a prompt still too long is the engine's to refuse).
  std::vector<size_t> starts;
  for (size_t k = 1; k < all.size(); ++k) {
    if (all[k].role == models::ChatRole::kUser) starts.push_back(k);
  }
  starts.push_back(all.size());
  // Fewer turns, fewer tokens: the first start that fits, by bisection
  // (a handful of encodings for the 32 turns a request may carry).
  size_t lo = 0, hi = starts.size() - 1;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (encode_from(starts[mid]).size() <= limit) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  ids = encode_from(starts[lo]);
  return starts[lo];
}

Plan Answerer::plan(const Request& request) const {
  check_text(request.text, options_.max_input_chars);
  if (request.user_id.size() > kMaxUserIdBytes) {
    throw std::invalid_argument(fmt::format("user_id: {} bytes, more than the limit of {}",
                                            request.user_id.size(), kMaxUserIdBytes));
  }
  check_history(request.history, options_);
  check_route(request.route);
  Plan plan;
  plan.request.options = generation_options(request.generation);
  plan.request.cancelled = std::make_shared<std::atomic<bool>>(false);
  plan.request.deadline = request.deadline;
  const prompts::Task task = choose_route(request, plan.answer);
  plan.answer.response_id = new_response_id();
  add_prompt(request, task, plan);
  // An unknown product said needs no model: no adapter, no experiment arm.
  if (plan.fixed_text.empty()) {
    choose_model(request, task, plan);
    plan.request.options.eos_ids = stop_ids(plan);
  }
  return plan;
}

void Answerer::execute(const std::vector<Plan*>& plans, const RunHooks& hooks) const {
  const auto waiter = std::make_shared<Waiter>();
  const bool streaming = hooks.on_text && plans.size() == 1;
  std::vector<std::future<models::EngineResult>> futures;
  auto cancel_all = [&] {
    for (const Plan* p : plans) p->request.cancelled->store(true);
  };
  try {
    for (Plan* p : plans) {
      models::EngineRequest request = p->request;  // keeps the plan's cancel flag
      auto clock = std::make_shared<TokenClock>(TokenClock{.last = Clock::now()});
      request.on_token = [this, clock, waiter, streaming](int64_t, std::string_view piece) {
        const Clock::time_point now = Clock::now();
        if (clock->tokens++ > 0 && on_token_gap_) {
          on_token_gap_(std::chrono::duration<double>(now - clock->last).count());
        }
        clock->last = now;
        if (!clock->text_started) {
          piece = trim_start(piece);
          clock->text_started = !piece.empty();
        }
        if (streaming && !piece.empty()) waiter->push(piece);
        return true;
      };
      request.on_done = [waiter] { waiter->end(); };
      futures.push_back(parts_.engine->submit(std::move(request)));
    }
  } catch (...) {
    // The others must not run for an answer nobody gets.
    cancel_all();
    for (auto& f : futures) f.wait();
    throw;
  }
  // Hands the streamed text over as it comes and polls for cancellation,
  // until the engine is done with every request.
  for (size_t ended = 0; ended < futures.size();) {
    const std::string text = waiter->take(std::chrono::milliseconds(20), ended);
    if (!text.empty() && !hooks.on_text(text)) cancel_all();
    if (hooks.cancelled && hooks.cancelled()) cancel_all();
  }
  // Every future is taken before an error (a row the engine failed) is
  // passed on.
  std::exception_ptr error;
  for (size_t i = 0; i < plans.size(); ++i) {
    try {
      fill_result(futures[i].get(), plans[i]->answer);
    } catch (...) {
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

Answer Answerer::run(Plan plan, const RunHooks& hooks) const {
  if (!plan.fixed_text.empty()) return answer_fixed(std::move(plan), hooks);
  execute({&plan}, hooks);
  return std::move(plan.answer);
}

ComparePlan Answerer::plan_compare(const Request& request) const {
  if (request.route == RouteAsked::kBase) {
    throw std::invalid_argument(
        "route: Compare answers with the base model and an adapter; "
        "ask for auto, describe or qa");
  }
  ComparePlan both;
  both.tuned = plan(request);
  const bool said = !both.tuned.fixed_text.empty();
  if (both.tuned.lease == nullptr && !said) {
    throw FailedPreconditionError(fmt::format(
        "no '{}' adapter is loaded to compare with the base model", both.tuned.answer.route.agent));
  }
  // The same prompt, sources and settings through no adapter.
  both.base = both.tuned;
  both.base.lease.reset();
  both.base.request.adapter_slot = -1;
  both.base.request.cancelled = std::make_shared<std::atomic<bool>>(false);
  Answer& base = both.base.answer;
  base.response_id = new_response_id();
  if (!said) base.model = "base";
  base.route.adapter.clear();
  base.route.adapter_version = 0;
  for (Answer* a : {&base, &both.tuned.answer}) {
    a->experiment.clear();
    a->arm.clear();
  }
  return both;
}

Comparison Answerer::run_compare(ComparePlan plan, const RunHooks& hooks) const {
  const RunHooks quiet{.on_text = {}, .cancelled = hooks.cancelled};
  if (!plan.tuned.fixed_text.empty()) {  // an unknown product said: the same answer twice
    return {.base = answer_fixed(std::move(plan.base), quiet),
            .tuned = answer_fixed(std::move(plan.tuned), quiet)};
  }
  // Both at once, so they share the engine's batches.
  execute({&plan.tuned, &plan.base}, quiet);
  return {.base = std::move(plan.base.answer), .tuned = std::move(plan.tuned.answer)};
}

agents::Route Answerer::classify(const std::string& text) const {
  check_text(text, options_.max_input_chars);
  return parts_.classifier->decide(text);
}

}  // namespace vitrine::router
