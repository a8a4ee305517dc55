#include "router/metrics_server.h"

#include <fmt/format.h>
#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <stdexcept>
#include <string_view>
#include <system_error>

namespace vitrine::router {
namespace {

constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";
// Scrapes are rare and cheap; httplib's default pool has a thread per core.
constexpr size_t kHttpThreads = 2;

struct HostPort {
  std::string host;
  int port = 0;
};

HostPort parse_address(const std::string& address) {
  auto bad = [&](const char* why) {
    return std::invalid_argument(
        fmt::format("metrics address '{}': {} (expected host:port)", address, why));
  };
  HostPort out;
  std::string_view port_text;
  if (!address.empty() && address[0] == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      throw bad("an IPv6 host needs the form [host]:port");
    }
    out.host = address.substr(1, close - 1);
    port_text = std::string_view(address).substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) throw bad("no port");
    out.host = address.substr(0, colon);
    if (out.host.find(':') != std::string::npos) throw bad("write an IPv6 host in brackets");
    port_text = std::string_view(address).substr(colon + 1);
  }
  if (out.host.empty()) out.host = "0.0.0.0";
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), out.port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      out.port < 0 || out.port > 65535) {
    throw bad("the port must be a number from 0 to 65535");
  }
  return out;
}

}  // namespace

MetricsHttpServer::MetricsHttpServer(const MetricsRegistry& registry, std::string address)
    : registry_(registry), address_(std::move(address)) {}

MetricsHttpServer::~MetricsHttpServer() {
  stop();
}

void MetricsHttpServer::start() {
  if (thread_.joinable()) {
    throw std::logic_error(fmt::format("the metrics server on {} is running already", address_));
  }
  const HostPort where = parse_address(address_);
  auto server = std::make_unique<httplib::Server>();
  server->new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
  // httplib sets SO_REUSEPORT by default, which lets a second daemon bind the
  // same port and silently take half the scrapes; SO_REUSEADDR alone does not.
  server->set_socket_options([](socket_t sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry_.render(), kContentType);
  });
  server->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404) {
      res.set_content("not found: only /metrics is served here\n", "text/plain");
    }
  });

  errno = 0;
  const int port = where.port == 0
                       ? server->bind_to_any_port(where.host)
                       : (server->bind_to_port(where.host, where.port) ? where.port : -1);
  if (port < 0) {
    const int err = errno;
    throw std::runtime_error(
        fmt::format("cannot listen for /metrics on {}{}", address_,
                    err != 0 ? ": " + std::system_category().message(err) : std::string()));
  }
  port_ = port;
  server_ = std::move(server);
  serve_returned_ = false;
  httplib::Server* s = server_.get();
  thread_ = std::thread([this, s] {
    s->listen_after_bind();
    serve_returned_ = true;
  });
  // httplib's stop() does nothing until the accept loop runs, so a stop()
  // right after start() would leave the thread serving forever.
  while (!s->is_running() && !serve_returned_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void MetricsHttpServer::stop() {
  if (!thread_.joinable()) return;
  server_->stop();
  thread_.join();
  server_.reset();
}

}  // namespace vitrine::router
