// vitrine-gateway: the OpenAI Chat Completions protocol in front of
// vitrined, so chat tools (Open WebUI, LibreChat, LangChain clients, bots)
// talk to vitrine as they talk to any OpenAI-compatible server, and the web
// page at / for people.
//
//   GET  /v1/models             vitrine (the classifier routes), vitrine-describe,
//                               vitrine-qa, base
//   POST /v1/chat/completions   the last user message is the request; `model` picks the
//                               route; stream: true sends chat.completion.chunk events
//                               and `data: [DONE]` (stream_options.include_usage adds
//                               the usage chunk)
//   POST /v1/compare            {"text", "model"}: base model and tuned adapter side by side
//   POST /v1/feedback           {"response_id", "rating", "comment"}
//   GET  /healthz, /readyz      the process; the daemon's health (SERVING)
//   GET  /                      the web page (gateway/web/index.html, built in)
//
// Each answer carries an extra top-level "vitrine" object — route, sources,
// response id, experiment arm, timings — that standard clients ignore.
// Errors use OpenAI's error object and HTTP codes. Requests go to the
// daemon over gRPC with the configured TLS and token; a client that goes
// away cancels its request there, and the timeout becomes the gRPC deadline.
//
// Not goals: the rest of the OpenAI API (completions, embeddings, tools,
// images), several choices (n > 1), multi-turn context (the last user
// message is the question).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace httplib {
class Server;
}

namespace vitrine::gateway {

// What configs/gateway.yaml sets (a test keeps the file and these equal).
struct GatewayConfig {
  std::string listen = "127.0.0.1:8080";
  std::string daemon = "127.0.0.1:50061";
  std::string daemon_tls_ca;      // PEM CA of the daemon's certificate; empty = plaintext
  std::string daemon_token_file;  // a token for the daemon (first line); empty = none
  std::string tokens_file;        // tokens this gateway's clients must present; empty = none
  std::vector<std::string> cors_origins;  // origins browsers may call from ("*" = any)
  int64_t max_body_bytes = 65536;         // larger request bodies get 413
  double timeout_seconds = 120;           // a request's deadline at the daemon
  int threads = 8;                        // HTTP worker threads: requests served at once
};

// Reads a config JSON (from YAML) over `config`; unknown keys, wrong types
// and values out of range throw std::invalid_argument naming the key.
void apply_gateway_config(const nlohmann::json& json, GatewayConfig& config);
nlohmann::ordered_json gateway_config_to_json(const GatewayConfig& config);

class Gateway {
 public:
  // Reads the token files; throws std::runtime_error naming a file that
  // cannot be read.
  explicit Gateway(GatewayConfig config);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Binds and serves until stop(); throws std::runtime_error naming the
  // address when it cannot bind.
  void run();
  // Makes run() return; safe from another thread.
  void stop();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace vitrine::gateway
