// vitrine.v1.ChatService: the gRPC edge of the daemon's answers, kept thin.
//
// Each handler converts its request to the answerer's plain structs
// (router/answerer.h: route, experiment arm, adapter, prompt, engine run,
// Compare), streams the text as it comes, and converts the answer back;
// what the libraries throw becomes a status through protos/status.h's one
// mapping (rpc::guarded). Every method goes through one step, serve(), that
//   1. admits the call: the bearer token (router/auth.h, ReloadAdapters
//      needing an admin one), UNAVAILABLE while loading or draining, and
//      DEADLINE_EXCEEDED for a deadline already past on arrival;
//   2. counts it in flight (the drain waits for these);
//   3. records it: vitrine_requests_total by method, route, arm and code,
//      vitrine_errors_total, the latency and token series of each answer,
//      and each answer in the response log for `vitrine ab-report`.
// Handlers run on gRPC's threads and block while the engine answers; client
// cancellation and deadlines end the request in the engine at its next step.
//
// Not goals: routing policy and conversations (the answerer's), per-user
// quotas, request priorities.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "router/answerer.h"
#include "router/auth.h"
#include "common/metrics.h"
#include "router/response_log.h"
#include "vitrine/v1/chat.grpc.pb.h"

namespace vitrine::router {

// Everything the service needs, loaded by the daemon before it serves.
struct ServingParts {
  AnswererParts answerer;
  std::shared_ptr<ResponseLog> log;  // may be null: nothing logged, Feedback refused
};

class ChatService final : public v1::ChatService::Service {
 public:
  ChatService(AnswererOptions options, Authenticator authenticator, MetricsRegistry& metrics);
  ~ChatService() override;

  // From now on requests are answered with `parts`.
  void ready(ServingParts parts);
  // From now on new requests get UNAVAILABLE; running ones go on.
  void start_draining();
  // Also ends the running requests now, each with UNAVAILABLE (the grace
  // period is over): the client hears "ask again", not CANCELLED.
  void abort_in_flight();
  // Calls being handled now.
  int64_t in_flight() const { return in_flight_.load(); }

  grpc::Status Ask(grpc::ServerContext* context, const v1::AskRequest* request,
                   v1::AskResponse* response) override;
  grpc::Status AskStream(grpc::ServerContext* context, const v1::AskRequest* request,
                         grpc::ServerWriter<v1::AskStreamEvent>* writer) override;
  grpc::Status Compare(grpc::ServerContext* context, const v1::AskRequest* request,
                       v1::CompareResponse* response) override;
  grpc::Status Classify(grpc::ServerContext* context, const v1::ClassifyRequest* request,
                        v1::ClassifyResponse* response) override;
  grpc::Status ListAdapters(grpc::ServerContext* context, const v1::ListAdaptersRequest* request,
                            v1::ListAdaptersResponse* response) override;
  grpc::Status Feedback(grpc::ServerContext* context, const v1::FeedbackRequest* request,
                        v1::FeedbackResponse* response) override;
  grpc::Status ReloadAdapters(grpc::ServerContext* context,
                              const v1::ReloadAdaptersRequest* request,
                              v1::ListAdaptersResponse* response) override;

 private:
  struct Serving;
  struct Call;
  class Instruments;

  using EventWriter = std::function<bool(const v1::AskStreamEvent&)>;

  void decode_requests_here();
  // AskStream's body, writing its events with `write`.
  grpc::Status stream_answer(grpc::ServerContext* context, const v1::AskRequest* request,
                             const EventWriter& write);
  // Admits, counts and records one call around `body` (run through
  // rpc::guarded, so what it throws becomes the call's status).
  grpc::Status serve(grpc::ServerContext* context, const char* method,
                     const std::function<grpc::Status(Call&)>& body);
  grpc::Status admit(Call& call) const;
  void record(const Call& call, const grpc::Status& status) const;
  void log_answer(ResponseLog& log, const Call& call, const Answer& answer,
                  const grpc::Status& status) const;

  AnswererOptions options_;
  Authenticator authenticator_;
  std::unique_ptr<Instruments> instruments_;
  mutable std::mutex mutex_;
  std::shared_ptr<const Serving> serving_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> aborted_{false};
  std::atomic<int64_t> in_flight_{0};
};

}  // namespace vitrine::router
