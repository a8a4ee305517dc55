// `vitrine eval --run DIR`: the base model beside each tuned adapter of a
// training run, on held-out and training products (also run by `vitrine
// train` at its end).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "training/evaluation.h"

namespace vitrine::cli {
namespace {

struct EvalArgs {
  std::string run;
  training::EvalOptions options;
  bool quiet = false;
};

int run_eval(EvalArgs args) {
  try {
    args.options.progress = !args.quiet;
    const auto results = training::evaluate_run(args.run, args.options);
    for (const auto& r : results) std::printf("%s\n", training::summary_line(r).c_str());
    std::printf("report: %s/eval/report.md\n", args.run.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitrine eval: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace

Command add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* cmd =
      app.add_subcommand("eval", "Compare the base model and the tuned adapters of a run");
  cmd->add_option("--run,-r", args->run, "run directory made by `vitrine train`")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--test", args->options.test_examples, "held-out products per task")
      ->capture_default_str();
  cmd->add_option("--train", args->options.train_examples, "training products per task")
      ->capture_default_str();
  cmd->add_option("--max-new-tokens", args->options.max_new_tokens, "answer length cap")
      ->capture_default_str();
  cmd->add_option("--repetition-penalty", args->options.repetition_penalty,
                  "1 = none; the same for base and tuned")
      ->capture_default_str();
  cmd->add_option("--batch-size", args->options.batch_size, "prompts per generation batch")
      ->capture_default_str();
  cmd->add_flag("--quiet,-q", args->quiet, "no progress output");
  return Command{cmd, [args] { return run_eval(*args); }};
}

}  // namespace vitrine::cli
