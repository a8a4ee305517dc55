#include "router/chat_service.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>

#include "common/clock.h"
#include "protos/lenient_decode.h"
#include "protos/status.h"

namespace vitrine::router {
namespace {

using Clock = std::chrono::steady_clock;

// ---- protos <-> the answerer's structs ----

std::vector<Turn> history_of(const v1::AskRequest& r) {
  std::vector<Turn> history;
  history.reserve(static_cast<size_t>(r.history_size()));
  for (const v1::Turn& t : r.history()) {
    // The role is checked by plan().
    history.push_back(
        {.role = static_cast<TurnRole>(static_cast<int>(t.role())), .text = t.text()});
  }
  return history;
}

Request request_of(const v1::AskRequest& r, Clock::time_point deadline) {
  const v1::GenerationSettings& g = r.generation();
  return {.text = r.text(),
          .history = history_of(r),
          .route = static_cast<RouteAsked>(static_cast<int>(r.route())),  // checked by plan()
          .user_id = r.user_id(),
          .generation = {.max_new_tokens = g.max_new_tokens(),
                         .temperature = g.temperature(),
                         .top_k = g.top_k(),
                         .top_p = g.top_p(),
                         .repetition_penalty = g.repetition_penalty(),
                         .seed = g.seed()},
          .deadline = deadline};
}

v1::Source to_proto(const agents::Source& s) {
  v1::Source out;
  out.set_uid(s.uid);
  out.set_title(s.title);
  out.set_score(s.score);
  out.set_evidence(std::string(agents::source_evidence_name(s.evidence)));
  out.set_history_index(std::max(s.history_index, 0));
  return out;
}

v1::AskResponse to_proto(const Answer& a) {
  v1::AskResponse out;
  out.set_response_id(a.response_id);
  out.set_text(a.text);
  v1::RouteTaken& route = *out.mutable_route();
  route.set_agent(a.route.agent);
  route.set_adapter(a.route.adapter);
  route.set_adapter_version(a.route.adapter_version);
  route.set_classifier_confidence(a.route.classifier_confidence);
  route.set_evidence(a.route.evidence);
  for (const agents::Source& s : a.sources) *out.add_sources() = to_proto(s);
  out.set_product_found(a.product_found);
  for (const agents::Source& s : a.closest) *out.add_closest() = to_proto(s);
  out.mutable_usage()->set_prompt_tokens(a.usage.prompt_tokens);
  out.mutable_usage()->set_completion_tokens(a.usage.completion_tokens);
  out.mutable_timings()->set_queue_ms(a.timings.queue_ms);
  out.mutable_timings()->set_first_token_ms(a.timings.first_token_ms);
  out.mutable_timings()->set_total_ms(a.timings.total_ms);
  out.mutable_timings()->set_route_ms(a.timings.route_ms);
  out.set_experiment(a.experiment);
  out.set_arm(a.arm);
  out.set_finish_reason(a.finish_reason);
  out.set_history_turns_used(a.history_turns_used);
  out.set_history_turns_dropped(a.history_turns_dropped);
  return out;
}

v1::Route to_proto(prompts::Task task) {
  return task == prompts::Task::kDescribe ? v1::ROUTE_DESCRIBE : v1::ROUTE_QA;
}

void list_adapters(const AdapterRegistry& registry, v1::ListAdaptersResponse& response) {
  for (const LoadedAdapter& a : registry.list()) {
    v1::AdapterInfo& info = *response.add_adapters();
    info.set_name(a.name);
    info.set_version(a.version);
    info.set_path(a.path.string());
    info.set_slot(a.slot);
    info.set_loaded_unix_ms(a.loaded_unix_ms);
  }
}

// ---- statuses ----

grpc::Status status_of_finish(const std::string& reason) {
  if (reason == "cancelled") return {grpc::StatusCode::CANCELLED, "the request was cancelled"};
  if (reason == "deadline") {
    return {grpc::StatusCode::DEADLINE_EXCEEDED, "the deadline passed before the answer ended"};
  }
  return grpc::Status::OK;
}

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

// The request and response types of a unary handler.
template <class Method>
struct MethodTraits;
template <class Service, class Req, class Resp>
struct MethodTraits<grpc::Status (Service::*)(grpc::ServerContext*, const Req*, Resp*)> {
  using Request = Req;
  using Response = Resp;
};

// Counts a call as in flight for as long as it runs.
class InFlight {
 public:
  explicit InFlight(std::atomic<int64_t>& count) : count_(count) { ++count_; }
  ~InFlight() { --count_; }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  std::atomic<int64_t>& count_;
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
                          {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}, {"route"})),
        route_decision(m.histogram(
            "vitrine_route_decision_seconds",
            "Time the classifier agent took to route a request (catalogue lookups and classifier)",
            {0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01}, {})) {}

  // The figures of an answer the engine ran (none for one it never ran).
  void observe(const Answer& a) {
    if (a.finish_reason.empty()) return;
    if (a.usage.completion_tokens > 0) {
      first_token.observe(a.timings.first_token_ms / 1000.0);
      tokens.labels({a.model}).inc(static_cast<double>(a.usage.completion_tokens));
    }
    total.labels({a.model}).observe(a.timings.total_ms / 1000.0);
  }

  Counter& requests;
  Counter& errors;
  Counter& tokens;
  Histogram& first_token;
  Histogram& inter_token;
  Histogram& total;
  Histogram& route_decision;
};

// What the daemon loaded, once ready.
struct ChatService::Serving {
  Answerer answerer;
  std::shared_ptr<ResponseLog> log;
};

// One call as serve() sees it.
struct ChatService::Call {
  grpc::ServerContext* context = nullptr;
  const char* method = "";
  std::shared_ptr<const Serving> serving;  // set once admitted
  Clock::time_point deadline = Clock::time_point::max();
  Request request;             // Ask, AskStream, Compare: what the log records
  std::deque<Answer> answers;  // recorded however the call ends

  const Answerer& answerer() const { return serving->answerer; }
  // Keeps a planned answer for the record; the caller fills it in.
  Answer& track(const Answer& planned) { return answers.emplace_back(planned); }
  RunHooks hooks() const {
    return {.on_text = {},
            .cancelled = [c = context, a = aborted] { return c->IsCancelled() || a->load(); }};
  }
  const std::atomic<bool>* aborted = nullptr;  // the service's: shutting down now
};

ChatService::ChatService(AnswererOptions options, Authenticator authenticator,
                         MetricsRegistry& metrics)
    : options_(options),
      authenticator_(std::move(authenticator)),
      instruments_(std::make_unique<Instruments>(metrics)) {
  decode_requests_here();
}

// gRPC would refuse a request with invalid UTF-8 before any handler, as
// INTERNAL with no details and counted nowhere: the methods whose requests
// hold strings decode them here (protos/lenient_decode.h), and a request
// that does not decode is refused through serve() like any other.
void ChatService::decode_requests_here() {
  const google::protobuf::ServiceDescriptor& api =
      *v1::AskRequest::descriptor()->file()->FindServiceByName("ChatService");
  auto index = [&api](const char* name) { return api.FindMethodByName(name)->index(); };
  auto refuse = [this](const char* method) -> rpc::Refuse {
    return [this, method](grpc::ServerContext* context, const grpc::Status& status) {
      return serve(context, method, [&status](Call&) { return status; });
    };
  };
  auto unary = [&](const char* name, auto method) {
    using Traits = MethodTraits<decltype(method)>;
    MarkMethodStreamed(index(name),
                       rpc::lenient_unary<typename Traits::Request, typename Traits::Response>(
                           [this, method](grpc::ServerContext* c, const auto* q, auto* r) {
                             return (this->*method)(c, q, r);
                           },
                           refuse(name)));
  };
  unary("Ask", &ChatService::Ask);
  unary("Compare", &ChatService::Compare);
  unary("Classify", &ChatService::Classify);
  unary("Feedback", &ChatService::Feedback);
  MarkMethodStreamed(index("AskStream"),
                     rpc::lenient_server_stream<v1::AskRequest, v1::AskStreamEvent>(
                         [this](grpc::ServerContext* c, const v1::AskRequest* q,
                                const EventWriter& write) { return stream_answer(c, q, write); },
                         refuse("AskStream")));
}

ChatService::~ChatService() = default;

void ChatService::ready(ServingParts parts) {
  Histogram& gaps = instruments_->inter_token;
  auto serving = std::make_shared<const Serving>(
      Serving{.answerer = Answerer(std::move(parts.answerer), options_,
                                   [&gaps](double seconds) { gaps.observe(seconds); }),
              .log = std::move(parts.log)});
  std::lock_guard lock(mutex_);
  serving_ = std::move(serving);
}

void ChatService::start_draining() {
  draining_.store(true);
}

void ChatService::abort_in_flight() {
  draining_.store(true);
  aborted_.store(true);
}

grpc::Status ChatService::serve(grpc::ServerContext* context, const char* method,
                                const std::function<grpc::Status(Call&)>& body) {
  InFlight counted(in_flight_);
  Call call;
  call.context = context;
  call.method = method;
  call.aborted = &aborted_;
  grpc::Status status = admit(call);
  if (status.ok()) status = rpc::guarded([&] { return body(call); });
  if (status.error_code() == grpc::StatusCode::CANCELLED && aborted_.load() &&
      !context->IsCancelled()) {
    // Ended by the shutdown, not by the client: another replica can answer.
    status = {grpc::StatusCode::UNAVAILABLE,
              "vitrined shut down before the answer ended: ask again (another replica)"};
  }
  record(call, status);
  return status;
}

grpc::Status ChatService::admit(Call& call) const {
  if (grpc::Status s = authenticator_.check(*call.context, call.method); !s.ok()) return s;
  if (draining_.load()) {
    return {grpc::StatusCode::UNAVAILABLE, "vitrined is shutting down: ask another replica"};
  }
  if (grpc::Status s = engine_deadline(*call.context, call.deadline); !s.ok()) return s;
  {
    std::lock_guard lock(mutex_);
    call.serving = serving_;
  }
  if (call.serving == nullptr) {
    return {grpc::StatusCode::UNAVAILABLE, "vitrined is still loading its model and adapters"};
  }
  return grpc::Status::OK;
}

void ChatService::record(const Call& call, const grpc::Status& status) const {
  const std::string code = code_word(status.error_code());
  // A call counts once: Compare's two answers are one request, labelled by
  // its tuned side (tracked first).
  const Answer* first = call.answers.empty() ? nullptr : &call.answers.front();
  instruments_->requests
      .labels({call.method, first ? first->model : "", first ? first->arm : "", code})
      .inc();
  if (!status.ok()) instruments_->errors.labels({code}).inc();
  // One routing decision a call, Compare's included.
  if (first != nullptr && first->route.evidence != "forced" && !first->route.evidence.empty()) {
    instruments_->route_decision.observe(first->timings.route_ms / 1000.0);
  }
  for (const Answer& a : call.answers) {
    instruments_->observe(a);
    if (call.serving != nullptr && call.serving->log != nullptr) {
      log_answer(*call.serving->log, call, a, status);
    }
  }
}

void ChatService::log_answer(ResponseLog& log, const Call& call, const Answer& a,
                             const grpc::Status& status) const {
  ResponseRecord rec;
  rec.response_id = a.response_id;
  rec.unix_ms = unix_ms() - static_cast<int64_t>(a.timings.total_ms);
  rec.user_id = call.request.user_id;
  rec.input = call.request.text;
  rec.route = a.model;
  rec.agent = a.route.agent;
  rec.adapter = a.route.adapter;
  rec.adapter_version = a.route.adapter.empty() ? -1 : a.route.adapter_version;
  rec.experiment = a.experiment;
  rec.arm = a.arm;
  rec.output = a.text;
  rec.prompt_tokens = a.usage.prompt_tokens;
  rec.completion_tokens = a.usage.completion_tokens;
  rec.queue_ms = a.timings.queue_ms;
  rec.first_token_ms = a.usage.completion_tokens > 0 ? a.timings.first_token_ms : -1;
  rec.total_ms = a.timings.total_ms;
  rec.finish_reason = a.finish_reason;
  rec.status_code = static_cast<int>(status.error_code());
  rec.error_message = status.error_message();
  try {
    log.record(rec);
  } catch (const std::exception& e) {
    // The answer stands; the log's failure is the operator's to see.
    std::fprintf(stderr, "vitrined: response %s not logged: %s\n", rec.response_id.c_str(),
                 e.what());
  }
}

grpc::Status ChatService::Ask(grpc::ServerContext* context, const v1::AskRequest* request,
                              v1::AskResponse* response) {
  return serve(context, "Ask", [&](Call& call) {
    call.request = request_of(*request, call.deadline);
    Plan plan = call.answerer().plan(call.request);
    Answer& answer = call.track(plan.answer);
    answer = call.answerer().run(std::move(plan), call.hooks());
    const grpc::Status status = status_of_finish(answer.finish_reason);
    if (status.ok()) *response = to_proto(answer);
    return status;
  });
}

grpc::Status ChatService::AskStream(grpc::ServerContext* context, const v1::AskRequest* request,
                                    grpc::ServerWriter<v1::AskStreamEvent>* writer) {
  return stream_answer(context, request,
                       [writer](const v1::AskStreamEvent& e) { return writer->Write(e); });
}

grpc::Status ChatService::stream_answer(grpc::ServerContext* context, const v1::AskRequest* request,
                                        const EventWriter& write) {
  return serve(context, "AskStream", [&](Call& call) {
    call.request = request_of(*request, call.deadline);
    Plan plan = call.answerer().plan(call.request);
    Answer& answer = call.track(plan.answer);
    RunHooks hooks = call.hooks();
    hooks.on_text = [&write](std::string_view text) {
      v1::AskStreamEvent event;
      event.set_text(std::string(text));
      return write(event);  // false: the client went away
    };
    answer = call.answerer().run(std::move(plan), hooks);
    const grpc::Status status = status_of_finish(answer.finish_reason);
    if (status.ok()) {
      v1::AskStreamEvent last;
      *last.mutable_answer() = to_proto(answer);
      write(last);
    }
    return status;
  });
}

grpc::Status ChatService::Compare(grpc::ServerContext* context, const v1::AskRequest* request,
                                  v1::CompareResponse* response) {
  return serve(context, "Compare", [&](Call& call) {
    call.request = request_of(*request, call.deadline);
    ComparePlan plan = call.answerer().plan_compare(call.request);
    Answer& tuned = call.track(plan.tuned.answer);
    Answer& base = call.track(plan.base.answer);
    Comparison both = call.answerer().run_compare(std::move(plan), call.hooks());
    tuned = std::move(both.tuned);
    base = std::move(both.base);
    grpc::Status status = status_of_finish(tuned.finish_reason);
    if (status.ok()) status = status_of_finish(base.finish_reason);
    if (status.ok()) {
      *response->mutable_base() = to_proto(base);
      *response->mutable_tuned() = to_proto(tuned);
    }
    return status;
  });
}

grpc::Status ChatService::Classify(grpc::ServerContext* context, const v1::ClassifyRequest* request,
                                   v1::ClassifyResponse* response) {
  return serve(context, "Classify", [&](Call& call) {
    const agents::Route r = call.answerer().classify(request->text());
    response->set_route(to_proto(r.task));
    response->set_confidence(r.confidence);
    for (size_t i = 0; i < r.labels.size() && i < r.scores.size(); ++i) {
      (*response->mutable_scores())[r.labels[i]] = r.scores[i];
    }
    response->set_evidence(std::string(agents::evidence_name(r.evidence)));
    if (r.title_match) *response->mutable_matched() = to_proto(*r.title_match);
    return grpc::Status::OK;
  });
}

grpc::Status ChatService::ListAdapters(grpc::ServerContext* context, const v1::ListAdaptersRequest*,
                                       v1::ListAdaptersResponse* response) {
  return serve(context, "ListAdapters", [&](Call& call) {
    list_adapters(*call.answerer().parts().registry, *response);
    return grpc::Status::OK;
  });
}

grpc::Status ChatService::Feedback(grpc::ServerContext* context, const v1::FeedbackRequest* request,
                                   v1::FeedbackResponse*) {
  return serve(context, "Feedback", [&](Call& call) -> grpc::Status {
    if (call.serving->log == nullptr) {
      return {grpc::StatusCode::FAILED_PRECONDITION, "this daemon keeps no response log"};
    }
    call.serving->log->add_feedback({.response_id = request->response_id(),
                                     .rating = request->rating(),
                                     .comment = request->comment(),
                                     .unix_ms = unix_ms()});
    return grpc::Status::OK;
  });
}

grpc::Status ChatService::ReloadAdapters(grpc::ServerContext* context,
                                         const v1::ReloadAdaptersRequest*,
                                         v1::ListAdaptersResponse* response) {
  return serve(context, "ReloadAdapters", [&](Call& call) -> grpc::Status {
    AdapterRegistry& registry = *call.answerer().parts().registry;
    const AdapterRegistry::ReloadResult r = registry.reload();
    registry.collect();
    list_adapters(registry, *response);
    if (r.errors.empty()) return grpc::Status::OK;
    std::string message = "the current versions keep serving; not loaded:";
    for (const std::string& e : r.errors) message += " " + e + ";";
    return {grpc::StatusCode::FAILED_PRECONDITION, message};
  });
}

}  // namespace vitrine::router
