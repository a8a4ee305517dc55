// vitrine.v1.ChatService: the daemon's answers.
//
// A request goes through the classifier agent (or a forced route), an A/B
// experiment's arm when one applies, the describe or qa agent (prompt and
// sources from the catalogue), then the engine, which batches it with every
// other running request through its own adapter. Each answer names its
// route (agent, adapter version, classifier confidence and evidence), its
// sources, usage and timings, and is logged with its arm for
// `vitrine ab-report`.
//
// The service answers UNAVAILABLE until the daemon hands it its loaded
// parts (ready()), and again once draining starts. Bearer tokens, when
// configured, are checked on every call; ReloadAdapters needs an admin one.
// Handlers run on gRPC's threads and block on the engine's futures; client
// cancellation and deadlines end the request in the engine at its next step.
//
// Not goals: multi-turn conversations, per-user quotas, request priorities.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "agents/classifier_agent.h"
#include "agents/describe_agent.h"
#include "agents/qa_agent.h"
#include "models/engine.h"
#include "models/tokenizer/chat_format.h"
#include "router/adapter_registry.h"
#include "router/experiments.h"
#include "router/metrics.h"
#include "router/response_log.h"
#include "router/router_config.h"
#include "vitrine/v1/chat.grpc.pb.h"

namespace vitrine::router {

// Everything the service needs, loaded by the daemon before it serves.
struct ServingParts {
  std::shared_ptr<const models::Tokenizer> tokenizer;
  models::ChatFamily family = models::ChatFamily::kPlain;
  std::shared_ptr<models::Engine> engine;
  std::shared_ptr<AdapterRegistry> registry;
  std::shared_ptr<const agents::ClassifierAgent> classifier;
  std::shared_ptr<const agents::DescribeAgent> describe;
  std::shared_ptr<const agents::QaAgent> qa;
  std::shared_ptr<const Experiments> experiments;  // may be null: no experiments
  std::shared_ptr<ResponseLog> log;                // may be null: nothing logged
};

// Bearer tokens; both sets empty = no authentication.
struct Tokens {
  std::set<std::string> user;
  std::set<std::string> admin;  // also valid wherever a user token is
};

class ChatService final : public v1::ChatService::Service {
 public:
  ChatService(RouterConfig config, Tokens tokens, MetricsRegistry& metrics);
  ~ChatService() override;

  // From now on requests are answered with `parts`.
  void ready(ServingParts parts);
  // From now on new requests get UNAVAILABLE; running ones go on.
  void start_draining();
  // Requests being answered now.
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
  struct Job;
  class Instruments;
  enum class Need { kUser, kAdmin };

  // The parts, or UNAVAILABLE while loading or draining; checks the token.
  grpc::Status admit(grpc::ServerContext* context, Need need,
                     std::shared_ptr<const ServingParts>& parts) const;
  // Validates the request and decides route, arm, prompt and sources.
  Job prepare(const ServingParts& parts, grpc::ServerContext* context,
              const v1::AskRequest& request, const char* method) const;
  // Submits, waits (watching for client cancellation) and fills the answer.
  grpc::Status finish(const ServingParts& parts, grpc::ServerContext* context, Job& job) const;
  void record(const ServingParts& parts, const v1::AskRequest& request, const Job& job,
              const grpc::Status& status) const;

  RouterConfig config_;
  Tokens tokens_;
  std::unique_ptr<Instruments> instruments_;
  mutable std::mutex mutex_;
  std::shared_ptr<const ServingParts> parts_;
  std::atomic<bool> draining_{false};
  mutable std::atomic<int64_t> in_flight_{0};
};

}  // namespace vitrine::router
