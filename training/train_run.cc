#include "training/train_run.h"

#include <fmt/format.h>

#include <cstdio>
#include <map>
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
#include "training/memory_estimate.h"
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

// Adapter `name`'s memory plan on the CPU (checkpointing on or off), printed
// by rank 0 when `print`; refuses one that does not fit, naming what to
// change (plan_training_memory). Other devices keep checkpointing off
// unless asked: their memory is not this machine's.
MemoryEstimate plan_adapter_memory(const TrainConfig& config,
                                   const models::LlamaConfig& model_config,
                                   models::BaseDtype base_dtype, const std::string& name,
                                   const AdapterTrainConfig& adapter, const DataParallel& group,
                                   bool print) {
  const TrainingShape shape{.batch_size = adapter.batch_size,
                            .seq_len = adapter.max_seq_len,
                            .rank = adapter.rank,
                            .target_modules = adapter.target_modules,
                            .dropout = adapter.dropout > 0};
  const Checkpointing mode = parse_checkpointing(config.activation_checkpointing);
  const bool cpu = models::resolve_device(config.device).is_cpu();
  const int64_t limit =
      config.memory_limit_gb > 0
          ? static_cast<int64_t>(config.memory_limit_gb * static_cast<double>(int64_t{1} << 30))
          : (cpu ? available_memory() : 0);
  const MemoryEstimate plan =
      plan_training_memory(model_config, base_dtype, shape,
                           cpu || mode == Checkpointing::kAlways ? mode : Checkpointing::kNever,
                           cpu ? limit : 0, fmt::format("training adapter '{}'", name));
  if (print && group.is_main()) {
    std::fprintf(stderr, "vitrine train: %s: base %s, memory estimate %s%s\n", name.c_str(),
                 models::base_dtype_name(base_dtype), describe(plan).c_str(),
                 limit > 0 ? fmt::format(" of {} free", format_bytes(limit)).c_str() : "");
  }
  return plan;
}

}  // namespace

TrainOutcome run_training(const TrainConfig& given, const TrainRunOptions& options) {
  const TrainConfig config = with_absolute_paths(given);
  models::init_runtime({.threads = config.threads, .device = config.device});
  const fs::path base(config.base_model);
  check_dataset(config.dataset);
  DataParallel group(options.data_parallel);
  const models::BaseDtype base_dtype =
      models::resolve_base_dtype(models::parse_base_dtype(config.base_dtype), base, config.device);
  if (config.bf16_compute && base_dtype != models::BaseDtype::kBf16) {
    throw std::invalid_argument(fmt::format(
        "config 'bf16_compute': true needs the base in bf16, and base_dtype '{}' holds it in "
        "f32: set base_dtype: bf16",
        config.base_dtype));
  }
  // Before anything is written or loaded: a run that cannot fit is refused at once.
  const models::LlamaConfig model_config = models::load_llama_config(base / "config.json");
  std::map<std::string, MemoryEstimate> memory;
  for (const auto& [name, adapter] : config.adapters) {
    memory.emplace(name, plan_adapter_memory(config, model_config, base_dtype, name, adapter, group,
                                             options.progress));
  }
  prepare_run_directory(config, options, group);
  // config.json and every weight file (the index and each shard when sharded).
  std::vector<fs::path> base_files{base / "config.json"};
  for (const fs::path& file : models::CheckpointWeights::open(base).files()) {
    base_files.push_back(file);
  }
  const std::string base_fingerprint = files_fingerprint(base_files);
  models::LlamaForCausalLM model = models::load_llama(
      base, config.device, models::WeightLayout::kCheckpoint, base_dtype,
      models::loading_bar("loading " + base.string(), options.progress && group.is_main()));
  if (config.bf16_compute) model->set_bf16_path(models::Bf16Path::kFast);
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
    model->set_activation_checkpointing(memory.at(name).checkpointing);
    outcome.adapters.push_back(AdapterRecipe(run, name, adapter, slot++).run());
    if (outcome.adapters.back().cancelled) return outcome;
  }
  if (config.classifier_enabled && group.is_main()) {
    train_router_classifier(config, options, log, outcome);
  }
  return outcome;
}

}  // namespace vitrine::training
