// GET /metrics on an address of its own: the daemon's Prometheus endpoint
// (metrics_listen), a small HTTP server on a thread of its own.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "common/metrics.h"

namespace httplib {
class Server;
}

namespace vitrine::router {

// Serves GET /metrics from a registry; every other path is a 404.
class MetricsHttpServer {
 public:
  // `address`: "host:port", "[::1]:port" for IPv6, ":port" for every
  // interface; port 0 picks a free one. The registry must outlive the server.
  MetricsHttpServer(const MetricsRegistry& registry, std::string address);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Binds and serves on a thread of its own. Throws std::invalid_argument
  // for a malformed address, std::runtime_error naming the address when it
  // cannot be bound, std::logic_error when already running.
  void start();
  // Stops serving and joins the thread; does nothing when not running.
  void stop();
  // The port bound by the last start().
  int port() const { return port_; }
  const std::string& address() const { return address_; }

 private:
  const MetricsRegistry& registry_;
  const std::string address_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> serve_returned_{false};
  int port_ = 0;
};

}  // namespace vitrine::router
