// vitrine-gateway: the OpenAI-compatible HTTP front of vitrined (see
// gateway/gateway.h).
//
//   vitrine-gateway [--config configs/gateway.yaml] [--listen ADDR] [--daemon ADDR]
//                   [--print-config] [--version]
//
// SIGTERM or SIGINT stops it (requests in flight are cut). Exit codes: 0
// stopped (or --help, --version, --print-config); 1 a bad config or an
// address it cannot bind, with the reason; 2 a usage error (unknown flag,
// missing value), with CLI11's message (common/program.h).
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "common/program.h"
#include "common/yaml_json.h"
#include "gateway/gateway.h"

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
  g_stop.store(true);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vitrine-gateway: OpenAI-compatible HTTP in front of vitrined"};
  std::string config_path, listen, daemon;
  bool print_config = false;
  app.add_option("--config", config_path, "gateway config (YAML), e.g. configs/gateway.yaml");
  app.add_option("--listen", listen, "HTTP address, overrides the config's");
  app.add_option("--daemon", daemon, "vitrined's address, overrides the config's");
  app.add_flag("--print-config", print_config, "print the config in effect as JSON and exit");
  vitrine::add_version_flag(app, "vitrine-gateway");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return vitrine::parse_error_exit(app, e);
  }
  try {
    vitrine::gateway::GatewayConfig config;
    if (!config_path.empty()) {
      vitrine::gateway::apply_gateway_config(vitrine::load_yaml_as_json(config_path), config);
    }
    if (!listen.empty()) config.listen = listen;
    if (!daemon.empty()) config.daemon = daemon;
    if (print_config) {
      std::puts(vitrine::gateway::gateway_config_to_json(config).dump(2).c_str());
      return 0;
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    vitrine::gateway::Gateway gateway(config);
    std::thread watcher([&] {
      while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      gateway.stop();
    });
    std::fprintf(stderr, "vitrine-gateway: listening on http://%s, daemon at %s\n",
                 config.listen.c_str(), config.daemon.c_str());
    try {
      gateway.run();
    } catch (...) {
      g_stop.store(true);
      watcher.join();
      throw;
    }
    g_stop.store(true);
    watcher.join();
    std::fprintf(stderr, "vitrine-gateway: stopped\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitrine-gateway: %s\n", e.what());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "vitrine-gateway: stopped by an unknown error\n");
    return 1;
  }
}
