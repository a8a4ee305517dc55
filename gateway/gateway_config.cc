// GatewayConfig to and from JSON (the YAML config, --print-config), with
// the range checks that name the key at fault.
#include "gateway/gateway_config.h"

#include <fmt/format.h>

#include <stdexcept>

#include "common/config_binder.h"

namespace vitrine::gateway {

namespace {

void bind(ConfigBinder& b, GatewayConfig& c) {
  b.field("listen", c.listen)
      .field("daemon", c.daemon)
      .field("daemon_tls_ca", c.daemon_tls_ca)
      .field("daemon_token_file", c.daemon_token_file)
      .field("tokens_file", c.tokens_file)
      .field("allowed_hosts", c.allowed_hosts)
      .field("cors_origins", c.cors_origins)
      .field("max_body_bytes", c.max_body_bytes)
      .field("timeout_seconds", c.timeout_seconds)
      .field("threads", c.threads)
      .field("max_connections", c.max_connections)
      .field("idle_timeout_seconds", c.idle_timeout_seconds)
      .field("header_timeout_seconds", c.header_timeout_seconds)
      .field("body_timeout_seconds", c.body_timeout_seconds)
      .field("write_timeout_seconds", c.write_timeout_seconds);
}

}  // namespace

void apply_gateway_config(const nlohmann::json& json, GatewayConfig& config) {
  ConfigBinder b(&json, "gateway");
  bind(b, config);
  b.finish_reading();
  auto require = [](bool ok, const char* key, const char* expected) {
    if (!ok) throw std::invalid_argument(fmt::format("config key 'gateway.{}': {}", key, expected));
  };
  require(!config.listen.empty(), "listen", "expected host:port");
  require(!config.daemon.empty(), "daemon", "expected host:port");
  for (const std::string& host : config.allowed_hosts) {
    require(!host.empty() && host.find_first_of(" /\t") == std::string::npos, "allowed_hosts",
            "expected host names or host:port, without scheme or path");
  }
  require(config.max_body_bytes >= 1024, "max_body_bytes", "expected >= 1024");
  require(config.timeout_seconds > 0, "timeout_seconds", "expected > 0");
  require(config.threads >= 1 && config.threads <= 256, "threads", "expected 1 to 256");
  // httplib refuses sockets numbered past FD_SETSIZE (1024); the daemon's
  // channel and the process's own files need some below it too.
  require(config.max_connections >= 2 && config.max_connections <= 768, "max_connections",
          "expected 2 to 768");
  require(config.idle_timeout_seconds > 0, "idle_timeout_seconds", "expected > 0");
  require(config.header_timeout_seconds > 0, "header_timeout_seconds", "expected > 0");
  require(config.body_timeout_seconds > 0, "body_timeout_seconds", "expected > 0");
  require(config.write_timeout_seconds > 0, "write_timeout_seconds", "expected > 0");
}

nlohmann::ordered_json gateway_config_to_json(const GatewayConfig& config) {
  GatewayConfig copy = config;
  ConfigBinder b(nullptr, "gateway");
  bind(b, copy);
  return b.take();
}

}  // namespace vitrine::gateway
