// `vitrine ab-report --log FILE [--json]`: requests, errors, ratings,
// latency and length per experiment arm, from the daemon's response log
// (router/response_log.h). Reads the log read-only, so it can run beside a
// serving daemon.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "router/response_log.h"

namespace vitrine::cli {
namespace {

struct AbReportArgs {
  std::string log;
  bool json = false;
};

int run_ab_report(const AbReportArgs& args) {
  try {
    const auto rows = router::ab_report(args.log);
    if (args.json) {
      std::puts(router::ab_report_json(rows).dump(2).c_str());
    } else {
      std::fputs(router::format_ab_report(rows).c_str(), stdout);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitrine ab-report: %s\n", e.what());
    return 1;
  }
}

}  // namespace

Command add_ab_report_command(CLI::App& app) {
  auto args = std::make_shared<AbReportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "ab-report", "Compare experiment arms (or routes) from the daemon's response log");
  cmd->add_option("--log", args->log, "the daemon's response log (SQLite)")->required();
  cmd->add_flag("--json", args->json, "print JSON instead of a table");
  return Command{cmd, [args] { return run_ab_report(*args); }};
}

}  // namespace vitrine::cli
