// `vitrine train --config configs/train.yaml`: fine-tunes the adapters the
// config names (describe and qa by default) from a prepared dataset.
//
// Started by torchrun-style launchers (RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT in the environment; see training/data_parallel.h),
// each process is one data-parallel rank; rank 0 writes the run and
// evaluates it.
#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <memory>

#include "agents/classifier_agent.h"
#include "cli/commands.h"
#include "common/yaml_json.h"
#include "training/evaluation.h"
#include "training/train_config.h"
#include "training/train_run.h"

namespace vitrine::cli {
namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
  g_stop.store(true);
}

struct TrainArgs {
  std::string config;
  std::string output;
  std::string dataset;
  std::string base_model;
  std::string base_dtype;
  std::string activation_checkpointing;
  int64_t max_steps = 0;  // 0: the config's
  bool quiet = false;
  bool print_config = false;
  bool resume = false;
  bool no_eval = false;
};

int run_train(const TrainArgs& args) {
  try {
    training::TrainConfig config = training::default_train_config();
    if (!args.config.empty()) training::apply_train_config(load_yaml_as_json(args.config), config);
    if (!args.output.empty()) config.output = args.output;
    if (!args.dataset.empty()) config.dataset = args.dataset;
    if (!args.base_model.empty()) config.base_model = args.base_model;
    if (!args.base_dtype.empty()) config.base_dtype = args.base_dtype;
    if (!args.activation_checkpointing.empty()) {
      config.activation_checkpointing = args.activation_checkpointing;
    }
    if (args.max_steps > 0) {
      for (auto& [name, adapter] : config.adapters) adapter.max_steps = args.max_steps;
    }
    if (args.print_config) {
      std::puts(training::train_config_to_json(config).dump(2).c_str());
      return 0;
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    const auto outcomes =
        training::run_training(config, {.progress = !args.quiet,
                                        .cancel = &g_stop,
                                        .resume = args.resume,
                                        .data_parallel = training::data_parallel_from_environment(),
                                        .on_event = {},
                                        .title_evidence = catalogue_title_evidence});
    if (!outcomes.main_rank) {
      for (const auto& o : outcomes.adapters) {
        std::printf("%s: %ld steps as a replica, adapter equal to rank 0's within %g\n",
                    o.name.c_str(), static_cast<long>(o.steps), o.replicas_max_difference);
      }
      return !outcomes.adapters.empty() && outcomes.adapters.back().cancelled ? 130 : 0;
    }
    for (const auto& o : outcomes.adapters) {
      std::printf("%s: %ld steps, train loss %.4f, best validation loss %.4f (step %ld)%s -> %s\n",
                  o.name.c_str(), static_cast<long>(o.steps), o.last_train_loss,
                  o.best_validation_loss, static_cast<long>(o.best_step),
                  o.cancelled       ? ", stopped by a signal"
                  : o.stopped_early ? ", stopped early"
                                    : "",
                  o.adapter_dir.string().c_str());
    }
    if (!outcomes.adapters.empty() && outcomes.adapters.back().cancelled) return 130;
    if (outcomes.classifier_trained) {
      const auto& c = outcomes.classifier;
      std::printf(
          "classifier: test accuracy %.4f (%ld texts), hard cases %.4f (%ld), texts generated "
          "from test titles %.4f (%ld), %s catalogue evidence, %.0f µs per decision -> %s\n",
          c.test_accuracy, static_cast<long>(c.test_examples), c.test_hard_accuracy,
          static_cast<long>(c.test_hard), c.generated_test_accuracy,
          static_cast<long>(c.generated_test_examples), c.title_evidence ? "with" : "without",
          c.microseconds_per_decision, outcomes.classifier_dir.string().c_str());
    }
    if (!args.no_eval) {
      training::EvalOptions eval;
      eval.progress = !args.quiet;
      for (const auto& r : training::evaluate_run(config.output, eval)) {
        std::printf("%s\n", training::summary_line(r).c_str());
      }
      std::printf("report: %s/eval/report.md\n", config.output.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitrine train: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace

Command add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "train", "Fine-tune the describe and qa LoRA adapters from a prepared dataset");
  cmd->add_option("--config,-c", args->config, "training config (configs/train.yaml)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--output,-o", args->output, "run directory (overrides the config's output)");
  cmd->add_option("--dataset,-d", args->dataset, "dataset directory (overrides the config)");
  cmd->add_option("--base-model,-m", args->base_model,
                  "base model directory (overrides the config)");
  cmd->add_option("--base-dtype", args->base_dtype,
                  "the frozen base's dtype: auto, bf16 or f32 (overrides the config)")
      ->check(CLI::IsMember({"auto", "bf16", "f32"}));
  cmd->add_option("--activation-checkpointing", args->activation_checkpointing,
                  "recompute layers in the backward pass: auto, always or never (overrides the "
                  "config)")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  cmd->add_option("--max-steps", args->max_steps,
                  "stop every adapter after this many optimizer steps (a trial run of a config; "
                  "overrides max_steps and epochs)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_flag("--quiet,-q", args->quiet, "no progress output");
  cmd->add_flag("--resume", args->resume,
                "continue an interrupted run from its latest checkpoints (same config)");
  cmd->add_flag("--no-eval", args->no_eval, "skip the base-vs-tuned evaluation at the end");
  cmd->add_flag("--print-config", args->print_config,
                "print the resolved configuration as JSON and exit");
  return Command{cmd, [args] { return run_train(*args); }};
}

training::TitleEvidenceFinder catalogue_title_evidence(const std::filesystem::path& dataset) {
  return agents::title_evidence_finder(dataset / "catalog.sqlite");
}

}  // namespace vitrine::cli
