// Subcommands of the `vitrine` program.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>

#include "training/classifier_training.h"

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

// The router classifier's catalogue lookup over <dataset>/catalog.sqlite,
// for training runs (`vitrine train`, the trainer service's jobs): it
// learns with the evidence the daemon's classifier agent routes with.
training::TitleEvidenceFinder catalogue_title_evidence(const std::filesystem::path& dataset);

}  // namespace vitrine::cli
