// A vitrine-gateway child process for a test: its config (JSON, which is
// YAML too) written to a temporary directory, a free loopback port, ready
// once /healthz answers. With no daemon behind it unless the config names
// one, it is enough for everything the gateway decides alone.
#pragma once

#include <fmt/format.h>
#include <httplib.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "tests/support/ports.h"
#include "tests/support/serving.h"
#include "tests/support/temp_dir.h"

namespace vitrine::testing {

class GatewayProcess {
 public:
  // `config` over these defaults: listen on a free port, a daemon address
  // where nothing listens.
  explicit GatewayProcess(nlohmann::json config = nlohmann::json::object()) {
    address_ = fmt::format("127.0.0.1:{}", free_port());
    nlohmann::json c = {{"listen", address_}, {"daemon", fmt::format("127.0.0.1:{}", free_port())}};
    c.update(config);
    address_ = c["listen"];
    write_file(dir_ / "gateway.yaml", c.dump());
    process_ = std::make_unique<ChildProcess>(
        "gateway/vitrine-gateway",
        std::vector<std::string>{"--config", (dir_ / "gateway.yaml").string()});
    for (int i = 0; i < 200 && !ready_; ++i) {
      httplib::Client probe("http://" + address_);
      probe.set_connection_timeout(1);
      if (const auto r = probe.Get("/healthz"); r && r->status == 200) ready_ = true;
      if (!ready_) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }

  bool ready() const { return ready_; }
  bool running() { return process_->running(); }
  const std::string& address() const { return address_; }
  int port() const { return std::stoi(address_.substr(address_.rfind(':') + 1)); }
  // "127.0.0.1:<port>" as the Host a client of this gateway sends.
  const std::string& host() const { return address_; }
  httplib::Client client(int read_timeout_seconds = 10) const {
    httplib::Client c("http://" + address_);
    c.set_read_timeout(read_timeout_seconds);
    c.set_connection_timeout(2);
    return c;
  }

 private:
  TempDir dir_;
  std::string address_;
  std::unique_ptr<ChildProcess> process_;
  bool ready_ = false;
};

}  // namespace vitrine::testing
