// vitrine-gateway's settings: what configs/gateway.yaml sets, each with its
// default, read once at the edge (main) and checked here. The limits bound
// what one client can hold: connections, worker threads, bytes and seconds.
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
  // Host header values served (name or name:port); empty = localhost,
  // 127.0.0.1 and [::1] at the listen port (and the listen host itself when
  // it is a specific address); "*" = any. Other Hosts get 403: a
  // DNS-rebinding page cannot drive the gateway from a browser.
  std::vector<std::string> allowed_hosts;
  // Origins browsers may call /v1 from ("*" = any), besides the allowed hosts.
  std::vector<std::string> cors_origins;
  // Larger request bodies get 413, however they are framed.
  int64_t max_body_bytes = 65536;
  // A request's deadline at the daemon.
  double timeout_seconds = 120;
  // Worker threads: requests processed at once (a streaming answer holds
  // one for its whole length); more wait in line.
  int threads = 8;
  // Open client connections; at the limit, a new one closes the one that
  // has waited longest without a request being answered.
  int max_connections = 256;
  // A kept-alive connection idle this long is closed.
  double idle_timeout_seconds = 5;
  // A request's line and headers must arrive within this (else 408).
  double header_timeout_seconds = 10;
  // Its body must arrive within this after the headers (else 408).
  double body_timeout_seconds = 30;
  // A client that takes none of the answer for this long is dropped.
  double write_timeout_seconds = 30;
};

// Reads a config JSON (from YAML) over `config`; unknown keys, wrong types
// and values out of range throw std::invalid_argument naming the key.
void apply_gateway_config(const nlohmann::json& json, GatewayConfig& config);
nlohmann::ordered_json gateway_config_to_json(const GatewayConfig& config);

}  // namespace vitrine::gateway
