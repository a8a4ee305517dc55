// Subcommands of the `vitrine` program.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace vitrine::cli {

struct Command {
  CLI::App* command = nullptr;
  std::function<int()> run;  // exit code
};

Command add_prepare_command(CLI::App& app);
Command add_logits_command(CLI::App& app);
Command add_generate_command(CLI::App& app);
Command add_export_command(CLI::App& app);
Command add_info_command(CLI::App& app);
Command add_train_command(CLI::App& app);
Command add_eval_command(CLI::App& app);
Command add_trainer_command(CLI::App& app);
Command add_ab_report_command(CLI::App& app);
Command add_ask_command(CLI::App& app);
Command add_compare_command(CLI::App& app);
Command add_bench_command(CLI::App& app);

}  // namespace vitrine::cli
