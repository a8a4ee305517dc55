// vitrine-gateway's settings: what configs/gateway.yaml sets, each with its
// default, read once at the edge (main) and checked here.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vitrine::gateway {

// What configs/gateway.yaml sets (a test keeps the file and these equal).
struct GatewayConfig {
  // Where the HTTP server listens, host:port.
  std::string listen = "127.0.0.1:8080";
  // vitrined's gRPC address.
  std::string daemon = "127.0.0.1:50061";
  // PEM CA of the daemon's certificate; empty = plaintext gRPC.
  std::string daemon_tls_ca;
  // A token for the daemon (the file's first); empty = none.
  std::string daemon_token_file;
  // Tokens this gateway's clients must present; empty = no authentication.
  std::string tokens_file;
  // Origins browsers may call /v1 from ("*" = any), besides the allowed hosts.
  std::vector<std::string> cors_origins;
  // Larger request bodies get 413.
  int64_t max_body_bytes = 65536;
  // A request's deadline at the daemon.
  double timeout_seconds = 120;
  // HTTP worker threads: requests served at once (a streaming answer holds
  // one for its whole length).
  int threads = 8;
};

// Reads a config JSON (from YAML) over `config`; unknown keys, wrong types
// and values out of range throw std::invalid_argument naming the key.
void apply_gateway_config(const nlohmann::json& json, GatewayConfig& config);
nlohmann::ordered_json gateway_config_to_json(const GatewayConfig& config);

}  // namespace vitrine::gateway
