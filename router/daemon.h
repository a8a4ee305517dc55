// vitrined's life: listen, load, serve, reload, drain.
//
//   1. The gRPC server and the metrics endpoint start at once, with the
//      standard health service saying NOT_SERVING (so Kubernetes waits)
//      and ChatService answering UNAVAILABLE.
//   2. The model, tokenizer, adapters, classifier, catalogue, experiments
//      and response log load, each library configured with its own options
//      struct straight from the config; then health says SERVING.
//   3. While serving, adapters_dir is polled every reload_seconds for new
//      versions (ReloadAdapters does the same on request); replaced
//      versions are detached once no request holds them.
//   4. When `stop` turns true (SIGTERM): health says NOT_SERVING, new
//      requests get UNAVAILABLE, requests in flight get drain_seconds to
//      finish; what is left is ended with UNAVAILABLE, then the server stops.
//
// Not goals: several models in one process, configuration reload (restart
// the pod), adapters outside adapters_dir.
#pragma once

#include <atomic>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "router/router_config.h"

namespace vitrine::router {

struct DaemonHooks {
  // Status lines for the operator (stderr by default).
  std::function<void(const std::string&)> log;
};

// Runs the daemon until `stop` is true and the drain is over. `experiments`
// is the experiments file as JSON (null: none). Throws std::runtime_error
// (or std::invalid_argument) naming what failed to load or to listen.
void run_daemon(const RouterConfig& config, const nlohmann::json& experiments,
                const std::atomic<bool>& stop, const DaemonHooks& hooks = {});

}  // namespace vitrine::router
