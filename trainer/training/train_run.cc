#include "trainer/training/train_run.h"

#include <fmt/format.h>
#include <torch/serialize.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "common/atomic_output.h"
#include "common/progress.h"
#include "common/stable_hash.h"
#include "models/peft_adapter.h"
#include "models/runtime.h"
#include "trainer/training/examples.h"
#include "trainer/training/trainable_adapter.h"

namespace vitrine::training {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

// Appends JSON lines to metrics.jsonl, flushed per line so a crash loses
// at most the line being written.
class MetricsLog {
 public:
  explicit MetricsLog(const fs::path& file) : out_(file, std::ios::app) {
    if (!out_) throw std::runtime_error(fmt::format("cannot write '{}'", file.string()));
  }
  void write(const Json& j) {
    out_ << j.dump() << '\n';
    out_.flush();
  }

 private:
  std::ofstream out_;
};

// A deterministic permutation of [0, n) for `seed` (Fisher-Yates on
// mt19937_64, whose sequence the C++ standard fixes).
std::vector<size_t> permutation(size_t n, uint64_t seed) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(seed);
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  return order;
}

std::vector<Batch> batches_of(const std::vector<PackedRow>& rows, int64_t batch_size) {
  std::vector<Batch> out;
  for (size_t i = 0; i < rows.size(); i += static_cast<size_t>(batch_size)) {
    out.push_back(make_batch(rows, i, std::min(rows.size(), i + static_cast<size_t>(batch_size))));
  }
  return out;
}

void save_checkpoint(const fs::path& dir, const LoraTrainer& trainer,
                     torch::optim::AdamW& optimizer, const Json& state) {
  StagingDir staging(dir);
  models::save_peft_adapter(staging.path() / "adapter", snapshot(trainer.adapter()));
  torch::save(optimizer, (staging.path() / "optimizer.pt").string());
  write_file_atomic(staging.path() / "state.json", state.dump(2) + "\n");
  staging.commit();
}

AdapterOutcome train_adapter(const TrainConfig& config, const std::string& name,
                             const AdapterTrainConfig& ac, int slot,
                             models::LlamaForCausalLM& model, const models::Tokenizer& tokenizer,
                             models::ChatFamily family, const Json& base_fingerprint,
                             MetricsLog& metrics, const TrainRunOptions& options) {
  const Task task = parse_task(ac.task);
  const fs::path tasks = fs::path(config.dataset) / "tasks" / std::string(task_name(task));
  const ExampleSet train = load_examples(tasks / "train.jsonl", task, tokenizer, family,
                                         ac.max_seq_len, ac.train_examples);
  const ExampleSet validation = load_examples(tasks / "validation.jsonl", task, tokenizer, family,
                                              ac.max_seq_len, ac.validation_examples);
  if (train.examples.empty()) {
    throw std::runtime_error(fmt::format("adapter '{}': no training examples in '{}'", name,
                                         (tasks / "train.jsonl").string()));
  }
  Json fingerprints = base_fingerprint;
  fingerprints["dataset"] = files_fingerprint({tasks / "train.jsonl", tasks / "validation.jsonl"});
  const std::vector<PackedRow> rows = pack_examples(train.examples, ac.max_seq_len, ac.packing);
  const std::vector<Batch> validation_batches =
      batches_of(pack_examples(validation.examples, ac.max_seq_len, ac.packing), ac.batch_size);

  const int64_t rows_per_step = ac.batch_size * ac.gradient_accumulation;
  const int64_t steps_per_epoch =
      std::max<int64_t>(1, (static_cast<int64_t>(rows.size()) + rows_per_step - 1) / rows_per_step);
  const int64_t total_steps = ac.max_steps > 0 ? ac.max_steps : ac.epochs * steps_per_epoch;

  models::PeftAdapterConfig peft;
  peft.r = ac.rank;
  peft.lora_alpha = ac.alpha;
  peft.lora_dropout = ac.dropout;
  peft.use_rslora = ac.rslora;
  peft.target_modules = ac.target_modules;
  peft.base_model_name_or_path = config.base_model;
  OptimizerConfig optimizer = ac.optimizer;
  optimizer.total_steps = total_steps;
  at::manual_seed(config.seed);  // LoRA dropout masks
  LoraTrainer trainer(
      model, make_trainable(model, init_lora_adapter(model, peft, config.seed + slot), slot),
      optimizer);

  metrics.write(Json{{"event", "start"},
                     {"adapter", name},
                     {"task", ac.task},
                     {"train_examples", train.examples.size()},
                     {"train_rows", rows.size()},
                     {"truncated", train.truncated},
                     {"dropped_long_prompt", train.dropped_long_prompt},
                     {"validation_examples", validation.examples.size()},
                     {"total_steps", total_steps}});

  Progress progress({.label = fmt::format("train {}", name),
                     .total_bytes = static_cast<uint64_t>(total_steps),
                     .enabled = options.progress,
                     .steps = true});
  AdapterOutcome outcome;
  outcome.name = name;
  models::PeftAdapter best = snapshot(trainer.adapter());
  double best_loss = INFINITY;
  int64_t evaluations_without_gain = 0, tokens = 0;
  const auto start = Clock::now();
  std::vector<size_t> order;
  size_t cursor = rows.size();  // start a fresh epoch at the first step
  int64_t epoch = -1;

  auto evaluate = [&](int64_t step) {
    if (validation_batches.empty()) return;
    const EvalResult r = trainer.evaluate(validation_batches);
    metrics.write(Json{{"event", "eval"},
                       {"adapter", name},
                       {"step", step},
                       {"validation_loss", r.loss},
                       {"validation_perplexity", std::exp(r.loss)},
                       {"validation_targets", r.targets}});
    if (r.loss < best_loss) {
      best_loss = r.loss;
      outcome.best_step = step;
      best = snapshot(trainer.adapter());
      evaluations_without_gain = 0;
    } else {
      ++evaluations_without_gain;
    }
  };

  // Step 0 is the base model (B = 0): the loss tuning has to beat, and the
  // adapter published if it never does.
  evaluate(0);
  for (int64_t step = 1; step <= total_steps; ++step) {
    std::vector<Batch> micro;
    for (int64_t m = 0; m < ac.gradient_accumulation; ++m) {
      if (cursor >= rows.size()) {
        ++epoch;
        order = permutation(rows.size(), config.seed * 1000003 + static_cast<uint64_t>(epoch));
        cursor = 0;
      }
      const size_t take = std::min(rows.size() - cursor, static_cast<size_t>(ac.batch_size));
      std::vector<PackedRow> chosen;
      for (size_t i = 0; i < take; ++i) chosen.push_back(rows[order[cursor + i]]);
      cursor += take;
      micro.push_back(make_batch(chosen, 0, chosen.size()));
    }
    const StepResult r = trainer.step(micro);
    tokens += r.tokens;
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    outcome.steps = step;
    outcome.last_train_loss = r.loss;
    outcome.tokens_per_second = seconds > 0 ? static_cast<double>(tokens) / seconds : 0;
    metrics.write(Json{{"event", "step"},
                       {"adapter", name},
                       {"step", step},
                       {"epoch", epoch},
                       {"loss", r.loss},
                       {"learning_rate", r.learning_rate},
                       {"grad_norm", r.grad_norm},
                       {"tokens", r.tokens},
                       {"tokens_per_second", outcome.tokens_per_second},
                       {"seconds", seconds}});
    progress.set_detail(
        fmt::format("loss {:.3f}, {:.0f} tokens/s", r.loss, outcome.tokens_per_second));
    progress.update(static_cast<uint64_t>(step), static_cast<uint64_t>(tokens));
    if (ac.eval_every > 0 && step % ac.eval_every == 0 && step < total_steps) {
      evaluate(step);
      if (ac.patience > 0 && evaluations_without_gain >= ac.patience) {
        outcome.stopped_early = true;
        break;
      }
    }
    if (ac.checkpoint_every > 0 && step % ac.checkpoint_every == 0) {
      save_checkpoint(fs::path(config.output) / "checkpoints" / name / fmt::format("step-{}", step),
                      trainer, trainer.optimizer(),
                      Json{{"adapter", name},
                           {"step", step},
                           {"epoch", epoch},
                           {"cursor", cursor},
                           {"best_validation_loss", std::isfinite(best_loss) ? best_loss : 0.0},
                           {"fingerprints", fingerprints}});
    }
    if (options.cancel != nullptr && options.cancel->load()) {
      outcome.cancelled = true;
      break;
    }
  }
  if (!outcome.stopped_early && !outcome.cancelled) evaluate(outcome.steps);
  progress.finish();
  outcome.best_validation_loss = std::isfinite(best_loss) ? best_loss : 0.0;
  if (!std::isfinite(best_loss)) best = snapshot(trainer.adapter());

  // Publish: the PEFT adapter and what it was made from, in one rename.
  outcome.adapter_dir = fs::path(config.output) / "adapters" / name;
  fs::create_directories(outcome.adapter_dir.parent_path());
  StagingDir staging(outcome.adapter_dir);
  models::save_peft_adapter(staging.path(), best);
  const Json record = {{"adapter", name},
                       {"task", ac.task},
                       {"fingerprints", fingerprints},
                       {"seed", config.seed},
                       {"steps", outcome.steps},
                       {"best_step", outcome.best_step},
                       {"best_validation_loss", outcome.best_validation_loss},
                       {"best_validation_perplexity", std::exp(outcome.best_validation_loss)},
                       {"last_train_loss", outcome.last_train_loss},
                       {"stopped_early", outcome.stopped_early},
                       {"cancelled", outcome.cancelled},
                       {"tokens_per_second", outcome.tokens_per_second},
                       {"config", train_config_to_json(config)["adapters"][name]}};
  write_file_atomic(staging.path() / "training.json", record.dump(2) + "\n");
  staging.commit();
  metrics.write(Json{{"event", "done"}, {"adapter", name}, {"record", record}});
  return outcome;
}

}  // namespace

std::vector<AdapterOutcome> run_training(const TrainConfig& config,
                                         const TrainRunOptions& options) {
  models::init_runtime({.threads = config.threads, .device = config.device});
  const fs::path base(config.base_model), dataset(config.dataset), output(config.output);
  if (!fs::exists(dataset / "stats.json")) {
    throw std::runtime_error(fmt::format(
        "'{}' is not a dataset made by `vitrine prepare` (no stats.json)", dataset.string()));
  }
  fs::create_directories(output);
  write_file_atomic(output / "config.json", train_config_to_json(config).dump(2) + "\n");
  const Json fingerprints = {
      {"base_model", files_fingerprint({base / "config.json", base / "model.safetensors"})}};
  models::LlamaForCausalLM model = models::load_llama(base, config.device);
  const auto tokenizer = models::load_tokenizer(base);
  const models::ChatFamily family = models::detect_chat_family(base);
  MetricsLog metrics(output / "metrics.jsonl");
  std::vector<AdapterOutcome> outcomes;
  int slot = 0;
  for (const auto& [name, ac] : config.adapters) {
    outcomes.push_back(train_adapter(config, name, ac, slot++, model, *tokenizer, family,
                                     fingerprints, metrics, options));
    if (outcomes.back().cancelled) break;
  }
  return outcomes;
}

}  // namespace vitrine::training
