#include "training/train_run.h"

#include <fmt/format.h>

#include <stdexcept>

#include "common/atomic_output.h"
#include "common/stable_hash.h"
#include "common/text_file.h"
#include "models/checkpoint_weights.h"
#include "models/llama.h"
#include "models/runtime.h"
#include "models/tokenizer/chat_format.h"
#include "models/tokenizer/tokenizer.h"
#include "training/lora_recipe.h"
#include "training/run_log.h"

namespace vitrine::training {
namespace fs = std::filesystem;
namespace {

// The config with absolute paths: the run records them, so `vitrine eval`
// and a resume work from any directory.
TrainConfig with_absolute_paths(const TrainConfig& given) {
  TrainConfig config = given;
  config.base_model = fs::absolute(config.base_model).lexically_normal().string();
  config.dataset = fs::absolute(config.dataset).lexically_normal().string();
  config.output = fs::absolute(config.output).lexically_normal().string();
  return config;
}

void check_dataset(const fs::path& dataset) {
  if (!fs::exists(dataset / "stats.json")) {
    throw std::runtime_error(fmt::format(
        "'{}' is not a dataset made by `vitrine prepare` (no stats.json)", dataset.string()));
  }
}

// Creates the run directory with its config.json (rank 0); --resume
// refuses a run directory started with another config.
void prepare_run_directory(const TrainConfig& config, const TrainRunOptions& options,
                           const DataParallel& group) {
  const fs::path output(config.output);
  if (group.is_main()) fs::create_directories(output);
  const std::string config_text = train_config_to_json(config).dump(2) + "\n";
  if (options.resume && fs::exists(output / "config.json") &&
      read_whole_file(output / "config.json", "--resume") != config_text) {
    throw std::runtime_error(fmt::format(
        "--resume: the configuration differs from the one '{}' was started with ({}); resume "
        "with the same config or start a new run directory",
        output.string(), (output / "config.json").string()));
  }
  if (group.is_main()) write_file_atomic(output / "config.json", config_text);
}

// The router's classifier (rank 0), trained after the adapters.
void train_router_classifier(const TrainConfig& config, const TrainRunOptions& options, RunLog& log,
                             TrainOutcome& outcome) {
  outcome.classifier_dir = fs::path(config.output) / "classifier";
  const TitleEvidenceFinder evidence =
      options.title_evidence ? options.title_evidence(config.dataset) : TitleEvidenceFinder{};
  outcome.classifier = train_classifier(config.dataset, outcome.classifier_dir, config.classifier,
                                        config.seed, evidence);
  outcome.classifier_trained = true;
  log.record(ClassifierEvent{.report = outcome.classifier});
}

}  // namespace

TrainOutcome run_training(const TrainConfig& given, const TrainRunOptions& options) {
  const TrainConfig config = with_absolute_paths(given);
  models::init_runtime({.threads = config.threads, .device = config.device});
  const fs::path base(config.base_model);
  check_dataset(config.dataset);
  DataParallel group(options.data_parallel);
  prepare_run_directory(config, options, group);
  // config.json and every weight file (the index and each shard when sharded).
  std::vector<fs::path> base_files{base / "config.json"};
  for (const fs::path& file : models::CheckpointWeights::open(base).files()) {
    base_files.push_back(file);
  }
  const std::string base_fingerprint = files_fingerprint(base_files);
  models::LlamaForCausalLM model = models::load_llama(base, config.device);
  const auto tokenizer = models::load_tokenizer(base);
  const models::ChatFamily family = models::detect_chat_family(base);
  RunLog log = group.is_main() ? RunLog(config.output, options.on_event) : RunLog();
  const RunContext run{.config = config,
                       .model = model,
                       .tokenizer = *tokenizer,
                       .family = family,
                       .base_model_fingerprint = base_fingerprint,
                       .log = log,
                       .group = group,
                       .options = options};
  TrainOutcome outcome;
  outcome.main_rank = group.is_main();
  int slot = 0;
  for (const auto& [name, adapter] : config.adapters) {
    outcome.adapters.push_back(AdapterRecipe(run, name, adapter, slot++).run());
    if (outcome.adapters.back().cancelled) return outcome;
  }
  if (config.classifier_enabled && group.is_main()) {
    train_router_classifier(config, options, log, outcome);
  }
  return outcome;
}

}  // namespace vitrine::training
