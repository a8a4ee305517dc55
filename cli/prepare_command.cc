// `vitrine prepare --input trn.json[.gz] --out DIR [--config prepare.yaml]`; `--input -`
// reads standard input.
#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/atomic_output.h"
#include "common/yaml_json.h"
#include "dataset/prepare.h"

namespace vitrine::cli {
namespace {

std::atomic<bool> g_cancel{false};

// An existing file (pipes and FIFOs too), or "-" for standard input.
const CLI::Validator kFileOrStandardInput(
    [](std::string& value) {
      if (value == "-") return std::string();
      return CLI::ExistingFile(value);
    },
    "FILE|-");

void on_signal(int) {
  g_cancel.store(true);
}

struct PrepareArgs {
  std::string input;
  std::string out;
  std::string config;
  int threads = -1;
  bool quiet = false;
  bool print_report = false;
  bool clean_only = false;
  std::string timings;
};

int run_prepare_command(const PrepareArgs& args) {
  try {
    dataset::PrepareConfig config;
    if (!args.config.empty()) dataset::apply_config_json(load_yaml_as_json(args.config), config);
    if (args.threads >= 0) config.threads = args.threads;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    dataset::PrepareHooks hooks;
    hooks.cancel = &g_cancel;
    hooks.progress = !args.quiet;
    hooks.clean_only = args.clean_only;
    const dataset::PrepareResult result = dataset::run_prepare(args.input, args.out, config, hooks);
    const auto& s = result.stats;
    const auto& t = result.timings;
    if (args.print_report) {
      std::fputs(result.report.c_str(), stdout);
    } else {
      std::printf(
          "prepared %s: %llu products kept of %llu lines (%llu malformed); train %llu, validation "
          "%llu, test %llu\n",
          args.out.c_str(), static_cast<unsigned long long>(result.kept),
          static_cast<unsigned long long>(s["input"]["lines"].get<uint64_t>()),
          static_cast<unsigned long long>(s["malformed"]["total"].get<uint64_t>()),
          static_cast<unsigned long long>(s["splits"]["products"]["train"].get<uint64_t>()),
          static_cast<unsigned long long>(s["splits"]["products"]["validation"].get<uint64_t>()),
          static_cast<unsigned long long>(s["splits"]["products"]["test"].get<uint64_t>()));
      std::printf("report: %s\n", (std::filesystem::path(args.out) / "report.md").c_str());
    }
    if (!s["input"]["stream_error"].is_null()) {
      std::fprintf(stderr, "vitrine prepare: warning: %s\n",
                   s["input"]["stream_error"].get<std::string>().c_str());
    }
    std::fprintf(
        stderr, "prepare: %.1f s (stream %.1f s, index %.1f s), %.1f MB/s, peak RSS %.0f MiB\n",
        t.total, t.stream, t.catalog_index, static_cast<double>(t.input_bytes) / 1e6 / t.total,
        static_cast<double>(t.peak_rss_bytes) / (1024.0 * 1024.0));
    if (!args.timings.empty()) {
      nlohmann::ordered_json j = {{"total_s", t.total},
                                  {"stream_s", t.stream},
                                  {"catalog_index_s", t.catalog_index},
                                  {"parse_clean_cpu_s", t.parse_clean_cpu},
                                  {"consumer_cpu_s", t.consumer_cpu},
                                  {"input_bytes", t.input_bytes},
                                  {"peak_rss_bytes", t.peak_rss_bytes},
                                  {"kept", result.kept}};
      write_file_atomic(args.timings, j.dump(1) + "\n");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitrine prepare: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace

Command add_prepare_command(CLI::App& app) {
  auto args = std::make_shared<PrepareArgs>();
  CLI::App* cmd = app.add_subcommand(
      "prepare", "Clean raw trn.json(.gz) into a dataset directory (catalogue, tasks, report)");
  cmd->add_option("--input,-i", args->input,
                  "raw trn.json or trn.json.gz (JSON Lines); a pipe or FIFO works, and '-' reads "
                  "standard input")
      ->required()
      ->check(kFileOrStandardInput);
  cmd->add_option("--out,-o", args->out,
                  "dataset directory to write: new, empty, or a dataset prepare wrote (replaced "
                  "whole and atomically when complete)")
      ->required();
  cmd->add_option("--config,-c", args->config,
                  "prepare.yaml (see configs/prepare.yaml); defaults otherwise")
      ->check(CLI::ExistingFile);
  cmd->add_option("--threads", args->threads,
                  "parse/clean workers (overrides run.threads; 0 = cores)");
  cmd->add_flag("--quiet,-q", args->quiet, "no progress output");
  cmd->add_flag("--clean-only", args->clean_only,
                "write only clean.jsonl (+ stats.json, report.md): no catalogue, no task files");
  cmd->add_flag("--print-report", args->print_report, "print report.md to stdout when done");
  cmd->add_option("--timings", args->timings,
                  "write wall/CPU times and peak memory to this JSON file (benchmarks)");
  return Command{cmd, [args] { return run_prepare_command(*args); }};
}

}  // namespace vitrine::cli
