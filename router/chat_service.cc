#include "router/chat_service.h"

#include <fmt/format.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <random>
#include <stdexcept>

#include "common/clock.h"
#include "common/errors.h"
#include "common/utf8.h"
#include "protos/status.h"

namespace vitrine::router {
namespace {

using Clock = std::chrono::steady_clock;

std::string new_response_id() {
  static std::mutex mutex;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mutex);
  return fmt::format("r-{:016x}{:08x}", rng(), static_cast<uint32_t>(rng()));
}

v1::Route route_of(prompts::Task task) {
  return task == prompts::Task::kDescribe ? v1::ROUTE_DESCRIBE : v1::ROUTE_QA;
}

// The request's own settings over the daemon's defaults, within its limits.
models::GenerationOptions generation_options(const v1::GenerationSettings& s,
                                             const EngineConfig& limits) {
  if (s.max_new_tokens() < 0 || s.max_new_tokens() > limits.max_new_tokens) {
    throw std::invalid_argument(fmt::format("generation.max_new_tokens: {} is not in 0..{}",
                                            s.max_new_tokens(), limits.max_new_tokens));
  }
  if (s.temperature() < 0 || s.temperature() > 10) {
    throw std::invalid_argument(
        fmt::format("generation.temperature: {} is not in 0..10", s.temperature()));
  }
  if (s.top_k() < 0) throw std::invalid_argument("generation.top_k: expected >= 0");
  if (s.top_p() < 0 || s.top_p() > 1) {
    throw std::invalid_argument(fmt::format("generation.top_p: {} is not in 0..1", s.top_p()));
  }
  if (s.repetition_penalty() < 0) {
    throw std::invalid_argument("generation.repetition_penalty: expected >= 0");
  }
  models::GenerationOptions o;
  o.max_new_tokens = s.max_new_tokens() > 0 ? s.max_new_tokens() : limits.default_new_tokens;
  o.temperature = s.temperature();
  o.top_k = s.top_k();
  o.top_p = s.top_p() > 0 ? s.top_p() : 1.0;
  o.repetition_penalty =
      s.repetition_penalty() > 0 ? s.repetition_penalty() : limits.repetition_penalty;
  o.seed = s.seed();
  return o;
}

v1::Source to_proto(const agents::Source& s) {
  v1::Source out;
  out.set_uid(s.uid);
  out.set_title(s.title);
  out.set_score(s.score);
  return out;
}

grpc::Status status_of_finish(const std::string& reason) {
  if (reason == "cancelled") return {grpc::StatusCode::CANCELLED, "the request was cancelled"};
  if (reason == "deadline") {
    return {grpc::StatusCode::DEADLINE_EXCEEDED, "the deadline passed before the answer ended"};
  }
  return grpc::Status::OK;
}

// What a handler waits for: the text pieces the engine's thread hands over
// (for streaming) and the end of the request, so the handler wakes at once
// for either without blocking the engine.
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
      ended_ = true;
    }
    changed_.notify_one();
  }
  // Waits up to `timeout` for text or the end; takes the text so far (all
  // pieces joined: one message for what came while the last was written).
  std::string take(std::chrono::milliseconds timeout, bool& ended) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return ended_ || !pieces_.empty(); });
    ended = ended_;
    return std::exchange(pieces_, {});
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string pieces_;
  bool ended_ = false;
};

}  // namespace

// The daemon's Prometheus series.
class ChatService::Instruments {
 public:
  explicit Instruments(MetricsRegistry& m)
      : requests(m.counter("vitrine_requests_total",
                           "Requests answered, by method, route, experiment arm and status code",
                           {"method", "route", "arm", "code"})),
        errors(m.counter("vitrine_errors_total", "Requests that failed, by status code", {"code"})),
        tokens(
            m.counter("vitrine_generated_tokens_total", "Tokens generated, by route", {"route"})),
        first_token(m.histogram("vitrine_time_to_first_token_seconds",
                                "Time from a request's arrival to its first token",
                                {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}, {})),
        inter_token(m.histogram("vitrine_inter_token_seconds",
                                "Time between two tokens of one answer",
                                {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}, {})),
        total(m.histogram("vitrine_request_seconds", "Time from arrival to the whole answer",
                          {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}, {"route"})) {}

  Counter& requests;
  Counter& errors;
  Counter& tokens;
  Histogram& first_token;
  Histogram& inter_token;
  Histogram& total;
};

struct ChatService::Job {
  v1::AskResponse response;  // route, sources, experiment: filled by prepare()
  std::string method;
  std::string route_word;  // describe, qa or base (the model that answers)
  models::EngineRequest request;
  std::shared_ptr<const LoadedAdapter> lease;  // the adapter version, held until the end
  grpc::ServerWriter<v1::AskStreamEvent>* stream = nullptr;  // AskStream: where text goes
  Clock::time_point last_token;
  int64_t tokens = 0;
};

namespace {

// Counts a handler as in flight for as long as it runs.
class InFlight {
 public:
  explicit InFlight(std::atomic<int64_t>& count) : count_(count) { ++count_; }
  ~InFlight() { --count_; }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  std::atomic<int64_t>& count_;
};

// DEADLINE_EXCEEDED when the client's deadline has already passed; the
// deadline on the engine's clock otherwise.
grpc::Status engine_deadline(const grpc::ServerContext& context, Clock::time_point& deadline) {
  deadline = Clock::time_point::max();
  const auto client = context.deadline();
  if (client == std::chrono::system_clock::time_point::max()) return grpc::Status::OK;
  const auto left = client - std::chrono::system_clock::now();
  if (left <= std::chrono::system_clock::duration::zero()) {
    return {grpc::StatusCode::DEADLINE_EXCEEDED, "the request's deadline had passed on arrival"};
  }
  deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(left);
  return grpc::Status::OK;
}

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

std::string code_word(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : std::to_string(i);
}

}  // namespace

ChatService::ChatService(RouterConfig config, Tokens tokens, MetricsRegistry& metrics)
    : config_(std::move(config)),
      tokens_(std::move(tokens)),
      instruments_(std::make_unique<Instruments>(metrics)) {}

ChatService::~ChatService() = default;

void ChatService::ready(ServingParts parts) {
  std::lock_guard lock(mutex_);
  parts_ = std::make_shared<const ServingParts>(std::move(parts));
}

void ChatService::start_draining() {
  draining_.store(true);
}

grpc::Status ChatService::admit(grpc::ServerContext* context, Need need,
                                std::shared_ptr<const ServingParts>& parts) const {
  if (!tokens_.user.empty() || !tokens_.admin.empty()) {
    const auto& metadata = context->client_metadata();
    const auto it = metadata.find("authorization");
    if (it == metadata.end()) {
      return {grpc::StatusCode::UNAUTHENTICATED, "missing 'authorization: Bearer <token>'"};
    }
    const std::string value(it->second.data(), it->second.size());
    constexpr std::string_view kBearer = "Bearer ";
    if (value.rfind(kBearer, 0) != 0) {
      return {grpc::StatusCode::UNAUTHENTICATED, "the authorization is not 'Bearer <token>'"};
    }
    const std::string token = value.substr(kBearer.size());
    const bool admin = tokens_.admin.count(token) > 0;
    if (!admin && tokens_.user.count(token) == 0) {
      return {grpc::StatusCode::UNAUTHENTICATED, "unknown token"};
    }
    if (need == Need::kAdmin && !admin) {
      return {grpc::StatusCode::PERMISSION_DENIED, "this call needs an admin token"};
    }
  }
  if (draining_.load()) {
    return {grpc::StatusCode::UNAVAILABLE, "vitrined is shutting down: ask another replica"};
  }
  Clock::time_point deadline;
  if (grpc::Status s = engine_deadline(*context, deadline); !s.ok()) return s;
  {
    std::lock_guard lock(mutex_);
    parts = parts_;
  }
  if (parts == nullptr) {
    return {grpc::StatusCode::UNAVAILABLE, "vitrined is still loading its model and adapters"};
  }
  return grpc::Status::OK;
}

ChatService::Job ChatService::prepare(const ServingParts& parts, grpc::ServerContext* context,
                                      const v1::AskRequest& request, const char* method) const {
  check_text(request.text(), config_.engine.max_input_chars);
  if (!v1::Route_IsValid(request.route())) {
    throw std::invalid_argument(fmt::format("route: unknown value {}", request.route()));
  }
  Job job;
  job.method = method;
  models::EngineRequest& er = job.request;
  er.options = generation_options(request.generation(), config_.engine);
  for (const int32_t id : parts.tokenizer->eos_ids()) er.options.eos_ids.push_back(id);
  er.options.stop_strings = models::chat_stop_strings(parts.family);
  er.cancelled = std::make_shared<std::atomic<bool>>(false);
  // admit() refused a deadline already past; one passing since ends the
  // request at the engine's next step.
  if (!engine_deadline(*context, er.deadline).ok()) er.deadline = Clock::now();

  // Which agent answers, and through which adapter.
  v1::RouteTaken& taken = *job.response.mutable_route();
  prompts::Task task = prompts::Task::kQa;
  bool tuned = request.route() != v1::ROUTE_BASE;
  if (request.route() == v1::ROUTE_AUTO || request.route() == v1::ROUTE_BASE) {
    const agents::Route decided = parts.classifier->decide(request.text());
    task = decided.task;
    taken.set_classifier_confidence(decided.confidence);
    taken.set_evidence(std::string(agents::evidence_name(decided.evidence)));
  } else {
    task = request.route() == v1::ROUTE_DESCRIBE ? prompts::Task::kDescribe : prompts::Task::kQa;
    taken.set_evidence("forced");
  }
  const std::string task_word(prompts::task_name(task));
  taken.set_agent(task_word);
  job.response.set_response_id(new_response_id());

  // An experiment's arm may send the request to the base model or pin a version.
  int64_t pinned = 0;
  if (tuned && parts.experiments != nullptr) {
    if (const auto arm =
            parts.experiments->assign(task_word, request.user_id(), job.response.response_id())) {
      job.response.set_experiment(arm->experiment);
      job.response.set_arm(arm->arm);
      if (arm->adapter_version < 0) tuned = false;
      pinned = arm->adapter_version;
    }
  }
  if (tuned) {
    job.lease = parts.registry->current(task_word);
    if (job.lease == nullptr && request.route() != v1::ROUTE_AUTO) {
      throw FailedPreconditionError(
          fmt::format("no '{}' adapter is loaded (route {} was asked for)", task_word,
                      v1::Route_Name(request.route())));
    }
    if (job.lease != nullptr && pinned > 0 && job.lease->version != pinned) {
      throw FailedPreconditionError(fmt::format(
          "experiment '{}' arm '{}' pins {}/v{}, but v{} is loaded", job.response.experiment(),
          job.response.arm(), task_word, pinned, job.lease->version));
    }
  }
  if (job.lease != nullptr) {
    taken.set_adapter(job.lease->name);
    taken.set_adapter_version(job.lease->version);
    er.adapter_slot = job.lease->slot;
  }
  job.route_word = job.lease != nullptr ? task_word : "base";

  // The agent's prompt and the records the answer is about.
  const agents::AgentPrompt prompt = task == prompts::Task::kDescribe
                                         ? parts.describe->prompt(request.text())
                                         : parts.qa->prompt(request.text());
  for (const agents::Source& s : prompt.sources) *job.response.add_sources() = to_proto(s);
  job.response.set_product_found(prompt.product_known);
  const std::string rendered = models::render_chat_prompt(parts.family, prompt.turn);
  const std::vector<int32_t> ids = parts.tokenizer->encode(rendered, /*add_bos=*/true);
  er.prompt.assign(ids.begin(), ids.end());
  return job;
}

grpc::Status ChatService::finish(const ServingParts& parts, grpc::ServerContext* context,
                                 Job& job) const {
  job.last_token = Clock::now();
  const auto waiter = std::make_shared<Waiter>();
  job.request.on_token = [this, &job, waiter](int64_t, std::string_view piece) {
    const Clock::time_point now = Clock::now();
    if (job.tokens++ > 0) {
      instruments_->inter_token.observe(
          std::chrono::duration<double>(now - job.last_token).count());
    }
    job.last_token = now;
    if (job.stream != nullptr && !piece.empty()) waiter->push(piece);
    return true;
  };
  job.request.on_done = [waiter] { waiter->end(); };
  const std::shared_ptr<std::atomic<bool>> cancelled = job.request.cancelled;
  std::future<models::EngineResult> future = parts.engine->submit(std::move(job.request));
  // Writes the streamed text as it comes and watches for the client going
  // away, until the engine is done with the request.
  for (bool ended = false; !ended;) {
    const std::string text = waiter->take(std::chrono::milliseconds(20), ended);
    if (!text.empty()) {
      v1::AskStreamEvent event;
      event.set_text(text);
      if (!job.stream->Write(event)) cancelled->store(true);  // the client went away
    }
    if (context->IsCancelled()) cancelled->store(true);
  }
  const models::EngineResult result = future.get();
  v1::AskResponse& r = job.response;
  r.set_text(result.generation.text);
  r.set_finish_reason(result.generation.finish_reason);
  r.mutable_usage()->set_prompt_tokens(result.timings.prompt_tokens);
  r.mutable_usage()->set_completion_tokens(result.timings.generated_tokens);
  r.mutable_timings()->set_queue_ms(result.timings.queue_ms);
  r.mutable_timings()->set_first_token_ms(result.timings.first_token_ms);
  r.mutable_timings()->set_total_ms(result.timings.total_ms);
  if (result.timings.generated_tokens > 0) {
    instruments_->first_token.observe(result.timings.first_token_ms / 1000.0);
    instruments_->tokens.labels({job.route_word})
        .inc(static_cast<double>(result.timings.generated_tokens));
  }
  instruments_->total.labels({job.route_word}).observe(result.timings.total_ms / 1000.0);
  return status_of_finish(result.generation.finish_reason);
}

void ChatService::record(const ServingParts& parts, const v1::AskRequest& request, const Job& job,
                         const grpc::Status& status) const {
  const std::string code = code_word(status.error_code());
  instruments_->requests.labels({job.method, job.route_word, job.response.arm(), code}).inc();
  if (!status.ok()) instruments_->errors.labels({code}).inc();
  if (parts.log == nullptr || job.response.response_id().empty()) return;
  const v1::AskResponse& r = job.response;
  ResponseRecord rec;
  rec.response_id = r.response_id();
  rec.unix_ms = unix_ms() - static_cast<int64_t>(r.timings().total_ms());
  rec.user_id = request.user_id();
  rec.input = request.text();
  rec.route = job.route_word;
  rec.agent = r.route().agent();
  rec.adapter = r.route().adapter();
  rec.adapter_version = r.route().adapter().empty() ? -1 : r.route().adapter_version();
  rec.experiment = r.experiment();
  rec.arm = r.arm();
  rec.output = r.text();
  rec.prompt_tokens = r.usage().prompt_tokens();
  rec.completion_tokens = r.usage().completion_tokens();
  rec.queue_ms = r.timings().queue_ms();
  rec.first_token_ms = r.usage().completion_tokens() > 0 ? r.timings().first_token_ms() : -1;
  rec.total_ms = r.timings().total_ms();
  rec.finish_reason = r.finish_reason();
  rec.status_code = static_cast<int>(status.error_code());
  rec.error_message = status.error_message();
  try {
    parts.log->record(rec);
  } catch (const std::exception& e) {
    // The answer stands; the log's failure is the operator's to see.
    std::fprintf(stderr, "vitrined: response %s not logged: %s\n", rec.response_id.c_str(),
                 e.what());
  }
}

grpc::Status ChatService::Ask(grpc::ServerContext* context, const v1::AskRequest* request,
                              v1::AskResponse* response) {
  InFlight counted(in_flight_);
  std::shared_ptr<const ServingParts> parts;
  Job job;
  job.method = "Ask";
  grpc::Status status = admit(context, Need::kUser, parts);
  if (status.ok()) {
    status = rpc::guarded([&] {
      job = prepare(*parts, context, *request, "Ask");
      return finish(*parts, context, job);
    });
  }
  if (status.ok()) *response = job.response;
  if (parts != nullptr)
    record(*parts, *request, job, status);
  else
    instruments_->requests.labels({"Ask", "", "", code_word(status.error_code())}).inc();
  return status;
}

grpc::Status ChatService::AskStream(grpc::ServerContext* context, const v1::AskRequest* request,
                                    grpc::ServerWriter<v1::AskStreamEvent>* writer) {
  InFlight counted(in_flight_);
  std::shared_ptr<const ServingParts> parts;
  Job job;
  job.method = "AskStream";
  grpc::Status status = admit(context, Need::kUser, parts);
  if (status.ok()) {
    status = rpc::guarded([&] {
      job = prepare(*parts, context, *request, "AskStream");
      job.stream = writer;
      const grpc::Status done = finish(*parts, context, job);
      if (done.ok()) {
        v1::AskStreamEvent last;
        *last.mutable_answer() = job.response;
        writer->Write(last);
      }
      return done;
    });
  }
  if (parts != nullptr)
    record(*parts, *request, job, status);
  else
    instruments_->requests.labels({"AskStream", "", "", code_word(status.error_code())}).inc();
  return status;
}

grpc::Status ChatService::Compare(grpc::ServerContext* context, const v1::AskRequest* request,
                                  v1::CompareResponse* response) {
  InFlight counted(in_flight_);
  std::shared_ptr<const ServingParts> parts;
  grpc::Status status = admit(context, Need::kUser, parts);
  if (!status.ok()) return status;
  Job tuned, base;
  tuned.method = base.method = "Compare";  // for the metrics, should preparing fail
  status = rpc::guarded([&]() -> grpc::Status {
    if (request->route() == v1::ROUTE_BASE) {
      throw std::invalid_argument(
          "route: Compare answers with the base model and an adapter; "
          "ask for auto, describe or qa");
    }
    v1::AskRequest adapted = *request;
    tuned = prepare(*parts, context, adapted, "Compare");
    if (tuned.lease == nullptr) {
      throw FailedPreconditionError(
          fmt::format("no '{}' adapter is loaded to compare with the base model",
                      tuned.response.route().agent()));
    }
    // The same prompt, sources and settings through no adapter.
    base = tuned;
    base.lease.reset();
    base.route_word = "base";
    base.request.adapter_slot = -1;
    base.request.cancelled = std::make_shared<std::atomic<bool>>(false);
    base.response.set_response_id(new_response_id());
    base.response.mutable_route()->set_adapter("");
    base.response.mutable_route()->set_adapter_version(0);
    base.response.clear_experiment();
    base.response.clear_arm();
    tuned.response.clear_experiment();
    tuned.response.clear_arm();
    // Both run at once, in the same batches.
    grpc::Status base_status;
    std::thread base_thread(
        [&] { base_status = rpc::guarded([&] { return finish(*parts, context, base); }); });
    grpc::Status tuned_status = rpc::guarded([&] { return finish(*parts, context, tuned); });
    base_thread.join();
    return !tuned_status.ok() ? tuned_status : base_status;
  });
  if (status.ok()) {
    *response->mutable_base() = base.response;
    *response->mutable_tuned() = tuned.response;
  }
  record(*parts, *request, tuned, status);
  if (!base.response.response_id().empty()) record(*parts, *request, base, status);
  return status;
}

grpc::Status ChatService::Classify(grpc::ServerContext* context, const v1::ClassifyRequest* request,
                                   v1::ClassifyResponse* response) {
  std::shared_ptr<const ServingParts> parts;
  grpc::Status status = admit(context, Need::kUser, parts);
  if (!status.ok()) return status;
  return rpc::guarded([&] {
    check_text(request->text(), config_.engine.max_input_chars);
    const agents::Route r = parts->classifier->decide(request->text());
    response->set_route(route_of(r.task));
    response->set_confidence(r.confidence);
    for (size_t i = 0; i < r.labels.size() && i < r.scores.size(); ++i) {
      (*response->mutable_scores())[r.labels[i]] = r.scores[i];
    }
    response->set_evidence(std::string(agents::evidence_name(r.evidence)));
    if (r.title_match) *response->mutable_matched() = to_proto(*r.title_match);
  });
}

grpc::Status ChatService::ListAdapters(grpc::ServerContext* context, const v1::ListAdaptersRequest*,
                                       v1::ListAdaptersResponse* response) {
  std::shared_ptr<const ServingParts> parts;
  grpc::Status status = admit(context, Need::kUser, parts);
  if (!status.ok()) return status;
  for (const LoadedAdapter& a : parts->registry->list()) {
    v1::AdapterInfo& info = *response->add_adapters();
    info.set_name(a.name);
    info.set_version(a.version);
    info.set_path(a.path.string());
    info.set_slot(a.slot);
    info.set_loaded_unix_ms(a.loaded_unix_ms);
  }
  return grpc::Status::OK;
}

grpc::Status ChatService::Feedback(grpc::ServerContext* context, const v1::FeedbackRequest* request,
                                   v1::FeedbackResponse*) {
  std::shared_ptr<const ServingParts> parts;
  grpc::Status status = admit(context, Need::kUser, parts);
  if (!status.ok()) return status;
  if (parts->log == nullptr) {
    return {grpc::StatusCode::FAILED_PRECONDITION, "this daemon keeps no response log"};
  }
  return rpc::guarded([&] {
    parts->log->add_feedback({.response_id = request->response_id(),
                              .rating = request->rating(),
                              .comment = request->comment(),
                              .unix_ms = unix_ms()});
  });
}

grpc::Status ChatService::ReloadAdapters(grpc::ServerContext* context,
                                         const v1::ReloadAdaptersRequest*,
                                         v1::ListAdaptersResponse* response) {
  std::shared_ptr<const ServingParts> parts;
  grpc::Status status = admit(context, Need::kAdmin, parts);
  if (!status.ok()) return status;
  return rpc::guarded([&]() -> grpc::Status {
    const AdapterRegistry::ReloadResult r = parts->registry->reload();
    parts->registry->collect();
    v1::ListAdaptersRequest list;
    ListAdapters(context, &list, response);
    if (r.errors.empty()) return grpc::Status::OK;
    std::string message = "the current versions keep serving; not loaded:";
    for (const std::string& e : r.errors) message += " " + e + ";";
    return {grpc::StatusCode::FAILED_PRECONDITION, message};
  });
}

}  // namespace vitrine::router
