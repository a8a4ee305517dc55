// vitrine-gateway: the OpenAI Chat Completions protocol in front of
// vitrined, so chat tools (Open WebUI, LibreChat, LangChain clients, bots)
// talk to vitrine as they talk to any OpenAI-compatible server, and the web
// page at / for people.
//
//   GET  /v1/models             vitrine (the classifier routes), vitrine-describe,
//                               vitrine-qa, base
//   GET  /v1/models/{id}        one of them (the SDK's models.retrieve)
//   POST /v1/chat/completions   the last message (a user's) is the request, the earlier
//                               ones its conversation; `model` picks the route; stream:
//                               true sends chat.completion.chunk events and `data: [DONE]`
//                               (stream_options.include_usage adds the usage chunk);
//                               parameters in openai_request.h
//   POST /v1/compare            {"text", "model"}: base model and tuned adapter side by side
//   POST /v1/feedback           {"response_id", "rating", "comment"}
//   GET  /healthz, /readyz      the process; the daemon's health (SERVING)
//   GET  /metrics               Prometheus text: requests by path and status, latency,
//                               connections, timeouts, resident memory
//   GET  /                      the web page (gateway/web/index.html, built in)
//
// Each answer carries an extra top-level "vitrine" object — route, sources
// (with the message that named their product), product_found and the
// closest titles when it is false, the conversation's turns used and
// dropped, response id, experiment arm, timings — that standard clients
// ignore.
// Errors use OpenAI's error object and HTTP codes. Requests go to the
// daemon over gRPC with the configured TLS and token; a client that goes
// away cancels its request there, and the timeout becomes the gRPC deadline.
// Hostile input is bounded before it reaches a handler: connections,
// deadlines and body sizes (http_front.h), Host, Origin and token
// (access_policy.h), parameter types (openai_request.h).
//
// Not goals: the rest of the OpenAI API (completions, embeddings, tools,
// images), several choices (n > 1), keeping conversations (clients send
// them whole, as OpenAI's API has it).
#pragma once

#include <memory>

#include "gateway/gateway_config.h"

namespace vitrine::gateway {

class Gateway {
 public:
  // Reads the token files; throws std::runtime_error naming a file that
  // cannot be read, std::invalid_argument for an allowed host it cannot parse.
  explicit Gateway(GatewayConfig config);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Binds and serves until stop(); throws std::runtime_error naming the
  // address when it cannot bind.
  void run();
  // Makes run() return; safe from another thread, before or during run().
  void stop();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace vitrine::gateway
