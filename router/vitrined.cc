// vitrined: the serving daemon (see router/daemon.h).
//
//   vitrined [--config configs/router.yaml] [--listen ADDR] [--metrics-listen ADDR]
//            [--adapters-dir DIR] [--print-config] [--version]
//
// SIGTERM or SIGINT drains and exits 0; a failure to load or to listen
// exits 1 with the reason; a command line it cannot parse exits 2
// (common/program.h).
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>

#include "common/program.h"
#include "common/yaml_json.h"
#include "models/runtime.h"
#include "router/daemon.h"

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
  g_stop.store(true);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vitrined: the vitrine gRPC daemon"};
  std::string config_path, listen, metrics_listen, adapters_dir;
  bool print_config = false;
  app.add_option("--config", config_path, "router config (YAML), e.g. configs/router.yaml");
  app.add_option("--listen", listen, "gRPC address, overrides the config's");
  app.add_option("--metrics-listen", metrics_listen,
                 "Prometheus address, overrides the config's (\"\" turns it off)");
  app.add_option("--adapters-dir", adapters_dir, "adapters directory, overrides the config's");
  app.add_flag("--print-config", print_config, "print the config in effect as JSON and exit");
  vitrine::add_version_flag(app, "vitrined");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return vitrine::parse_error_exit(app, e);
  }
  vitrine::models::reexec_with_passive_wait_policy(argv);
  try {
    vitrine::router::RouterConfig config;
    if (!config_path.empty()) {
      vitrine::router::apply_router_config(vitrine::load_yaml_as_json(config_path), config);
    }
    if (!listen.empty()) config.listen = listen;
    if (app.count("--metrics-listen") > 0) config.metrics_listen = metrics_listen;
    if (!adapters_dir.empty()) config.adapters_dir = adapters_dir;
    if (print_config) {
      std::puts(vitrine::router::router_config_to_json(config).dump(2).c_str());
      return 0;
    }
    const nlohmann::json experiments = config.experiments.empty()
                                           ? nlohmann::json()
                                           : vitrine::load_yaml_as_json(config.experiments);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    vitrine::router::run_daemon(config, experiments, g_stop);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitrined: %s\n", e.what());
    return vitrine::kExitFailure;
  }
}
