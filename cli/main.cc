// `vitrine`: the command-line program. main() only wires subcommands; each
// lives in its own file and returns an exit code (0 ok, 1 failed, 2 usage).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.h"
#include "common/program.h"
#include "models/runtime.h"

int main(int argc, char** argv) {
  CLI::App app{"vitrine: tune and serve product-knowledge language models"};
  app.require_subcommand(1);
  vitrine::add_version_flag(app, "vitrine");
  auto prepare = vitrine::cli::add_prepare_command(app);
  auto logits = vitrine::cli::add_logits_command(app);
  auto generate = vitrine::cli::add_generate_command(app);
  auto export_model = vitrine::cli::add_export_command(app);
  auto info = vitrine::cli::add_info_command(app);
  auto train = vitrine::cli::add_train_command(app);
  auto eval = vitrine::cli::add_eval_command(app);
  auto trainer = vitrine::cli::add_trainer_command(app);
  auto ab_report = vitrine::cli::add_ab_report_command(app);
  auto ask = vitrine::cli::add_ask_command(app);
  auto compare = vitrine::cli::add_compare_command(app);
  auto bench = vitrine::cli::add_bench_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return vitrine::parse_error_exit(app, e);
  }
  if (app.got_subcommand(prepare.command)) return prepare.run();
  if (app.got_subcommand(ab_report.command)) return ab_report.run();
  // The daemon's clients load no model either.
  if (app.got_subcommand(ask.command)) return ask.run();
  if (app.got_subcommand(compare.command)) return compare.run();
  if (app.got_subcommand(bench.command)) return bench.run();
  // The model commands need OpenMP's passive wait policy, which only the
  // environment at start-up sets (see models/runtime.h).
  vitrine::models::reexec_with_passive_wait_policy(argv);
  if (app.got_subcommand(info.command)) return info.run();
  if (app.got_subcommand(train.command)) return train.run();
  if (app.got_subcommand(eval.command)) return eval.run();
  if (app.got_subcommand(trainer.command)) return trainer.run();
  if (app.got_subcommand(logits.command)) return logits.run();
  if (app.got_subcommand(generate.command)) return generate.run();
  if (app.got_subcommand(export_model.command)) return export_model.run();
  return 2;
}
