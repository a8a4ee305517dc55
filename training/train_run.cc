#include "training/train_run.h"

#include <fmt/format.h>
#include <torch/serialize.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "common/atomic_output.h"
#include "common/progress.h"
#include "common/stable_hash.h"
#include "common/text_file.h"
#include "models/peft_adapter.h"
#include "models/runtime.h"
#include "prompts/prompts.h"
#include "training/examples.h"
#include "training/tensorboard.h"
#include "training/trainable_adapter.h"

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

// What a run reports as it goes: metrics.jsonl and TensorBoard scalars,
// written by rank 0 only (the other ranks' logs are disabled).
class RunLog {
 public:
  RunLog() = default;
  RunLog(const fs::path& output, std::function<void(const Json&)> on_event)
      : metrics_(std::in_place, output / "metrics.jsonl"),
        board_(std::in_place, output / "tensorboard"),
        on_event_(std::move(on_event)) {}
  void write(const Json& j) {
    if (!metrics_) return;
    metrics_->write(j);
    if (on_event_) on_event_(j);
  }
  void scalar(const std::string& tag, double value, int64_t step) {
    if (board_) board_->scalar(tag, value, step);
  }

 private:
  std::optional<MetricsLog> metrics_;
  std::optional<TensorBoardWriter> board_;
  std::function<void(const Json&)> on_event_;
};

// A deterministic permutation of [0, n) for `seed`.
std::vector<size_t> permutation(size_t n, uint64_t seed) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(seed);
  shuffle_order(order, rng);
  return order;
}

std::vector<Batch> batches_of(const std::vector<PackedRow>& rows, int64_t batch_size) {
  std::vector<Batch> out;
  for (size_t i = 0; i < rows.size(); i += static_cast<size_t>(batch_size)) {
    out.push_back(make_batch(rows, i, std::min(rows.size(), i + static_cast<size_t>(batch_size))));
  }
  return out;
}

// Where a run is between steps: enough to continue it exactly.
struct LoopState {
  int64_t step = 0;             // optimizer steps done
  int64_t epoch = -1;           // epoch of the current data order
  size_t cursor = SIZE_MAX;     // next row of that order (past the end: new epoch)
  double best_loss = INFINITY;  // best validation loss so far
  int64_t best_step = 0;
  int64_t evaluations_without_gain = 0;
  int64_t tokens = 0;
};

uint64_t epoch_seed(uint64_t seed, int64_t epoch) {
  return seed * 1000003 + static_cast<uint64_t>(epoch);
}

// The seed of the dropout masks of one optimizer step on one rank: drawn
// afresh each step, so a resumed run draws what the uninterrupted one did
// without saving generator state, and ranks draw different masks.
uint64_t step_seed(uint64_t seed, int slot, int64_t step, int rank) {
  return stable_hash64(fmt::format("dropout/{}/{}/{}/{}", seed, slot, step, rank));
}

// checkpoints/<adapter>/step-N: the adapter, the best adapter so far, the
// optimizer's moments and the loop state, renamed into place in one step.
void save_checkpoint(const fs::path& dir, LoraTrainer& trainer, const models::PeftAdapter& best,
                     const LoopState& st) {
  fs::create_directories(dir.parent_path());
  StagingDir staging(dir);
  models::save_peft_adapter(staging.path() / "adapter", snapshot(trainer.adapter()));
  models::save_peft_adapter(staging.path() / "best", best);
  torch::save(trainer.optimizer(), (staging.path() / "optimizer.pt").string());
  const Json state = {{"step", st.step},
                      {"epoch", st.epoch},
                      {"cursor", st.cursor},
                      {"best_validation_loss", std::isfinite(st.best_loss) ? st.best_loss : -1.0},
                      {"best_step", st.best_step},
                      {"evaluations_without_gain", st.evaluations_without_gain},
                      {"tokens", st.tokens}};
  write_file_atomic(staging.path() / "state.json", state.dump(2) + "\n");
  staging.commit();
}

struct Checkpoint {
  fs::path dir;
  int64_t step = 0;
};

// The checkpoint with the most steps, if any.
std::optional<Checkpoint> latest_checkpoint(const fs::path& dir) {
  std::optional<Checkpoint> latest;
  if (!fs::exists(dir)) return latest;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("step-") || !fs::exists(entry.path() / "state.json")) continue;
    const int64_t step = std::stoll(name.substr(5));
    if (!latest || step > latest->step) latest = Checkpoint{entry.path(), step};
  }
  return latest;
}

LoopState restore_checkpoint(const fs::path& dir, LoraTrainer& trainer, models::PeftAdapter& best) {
  const Json state = Json::parse(read_whole_file(dir / "state.json", "checkpoint"));
  LoopState st;
  st.step = state["step"];
  st.epoch = state["epoch"];
  st.cursor = state["cursor"];
  const double best_loss = state["best_validation_loss"];
  st.best_loss = best_loss < 0 ? INFINITY : best_loss;
  st.best_step = state["best_step"];
  st.evaluations_without_gain = state["evaluations_without_gain"];
  st.tokens = state["tokens"];
  const models::PeftAdapter saved = models::load_peft_adapter(dir / "adapter");
  {
    at::NoGradGuard no_grad;
    const TrainableAdapter& adapter = trainer.adapter();
    for (size_t m = 0; m < adapter.modules.size(); ++m) {
      const std::string& path = adapter.modules[m];
      const auto it = saved.modules.find(path);
      if (it == saved.modules.end()) {
        throw std::runtime_error(fmt::format(
            "checkpoint '{}' lacks module '{}': made with another config?", dir.string(), path));
      }
      adapter.parameters[2 * m].second.copy_(it->second.a);
      adapter.parameters[2 * m + 1].second.copy_(it->second.b);
    }
  }
  best = models::load_peft_adapter(dir / "best");
  torch::load(trainer.optimizer(), (dir / "optimizer.pt").string());
  trainer.set_steps_done(st.step);
  return st;
}

// The largest difference between this rank's adapter and rank 0's, the
// same on every rank: replicas that took the same steps hold the same
// numbers, and anything else is a bug worth stopping for.
double replicas_max_difference(const TrainableAdapter& adapter, DataParallel& group) {
  if (!group.distributed()) return 0;
  std::vector<at::Tensor> mine, mains;
  for (const at::Tensor& t : adapter.tensors()) {
    mine.push_back(t.detach());
    mains.push_back(t.detach().clone());
  }
  group.broadcast_from_main(mains);
  double largest = 0;
  for (size_t i = 0; i < mine.size(); ++i) {
    largest = std::max(largest, (mine[i] - mains[i]).abs().max().item<double>());
  }
  return group.all_reduce(std::vector<double>{largest}, Reduce::kMax)[0];
}

AdapterOutcome train_adapter(const TrainConfig& config, const std::string& name,
                             const AdapterTrainConfig& ac, int slot,
                             models::LlamaForCausalLM& model, const models::Tokenizer& tokenizer,
                             models::ChatFamily family, const Json& base_fingerprint, RunLog& log,
                             DataParallel& group, const TrainRunOptions& options) {
  const fs::path published = fs::path(config.output) / "adapters" / name;
  // Finished before an interruption (not cancelled): kept as it is.
  std::optional<Json> finished;
  if (options.resume && fs::exists(published / "training.json")) {
    Json record = Json::parse(read_whole_file(published / "training.json", "--resume"));
    if (!record.value("cancelled", false)) finished = std::move(record);
  }
  if (!group.agree(finished ? 1.0 : 0.0)) {
    throw std::runtime_error(fmt::format(
        "--resume: ranks disagree on whether adapter '{}' is finished: the run directory '{}' must "
        "be on a volume every rank shares",
        name, config.output));
  }
  if (finished) {
    const Json& record = *finished;
    AdapterOutcome done;
    done.name = name;
    done.steps = record["steps"];
    done.best_step = record["best_step"];
    done.best_validation_loss = record["best_validation_loss"];
    done.last_train_loss = record["last_train_loss"];
    done.stopped_early = record["stopped_early"];
    done.tokens_per_second = record["tokens_per_second"];
    done.adapter_dir = published;
    return done;
  }
  const prompts::Task task = prompts::parse_task(ac.task);
  const fs::path tasks = fs::path(config.dataset) / "tasks" / std::string(prompts::task_name(task));
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

  // A step's micro-batches, over all ranks; rank r takes the r-th run of
  // gradient_accumulation of them.
  const int64_t micro_per_step = ac.gradient_accumulation * group.world_size();
  const int64_t rows_per_step = ac.batch_size * micro_per_step;
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
  LoraTrainer trainer(
      model, make_trainable(model, init_lora_adapter(model, peft, config.seed + slot), slot),
      optimizer);
  trainer.set_data_parallel(&group);

  log.write(Json{{"event", "start"},
                 {"adapter", name},
                 {"task", ac.task},
                 {"train_examples", train.examples.size()},
                 {"train_rows", rows.size()},
                 {"truncated", train.truncated},
                 {"dropped_long_prompt", train.dropped_long_prompt},
                 {"validation_examples", validation.examples.size()},
                 {"world_size", group.world_size()},
                 {"rows_per_step", rows_per_step},
                 {"total_steps", total_steps}});

  AdapterOutcome outcome;
  outcome.name = name;
  const fs::path checkpoints = fs::path(config.output) / "checkpoints" / name;
  LoopState st;
  models::PeftAdapter best = snapshot(trainer.adapter());
  const std::optional<Checkpoint> resume_from =
      options.resume ? latest_checkpoint(checkpoints) : std::nullopt;
  if (!group.agree(resume_from ? static_cast<double>(resume_from->step) : 0.0)) {
    throw std::runtime_error(fmt::format(
        "--resume: ranks found different checkpoints of adapter '{}' in '{}': the run directory "
        "must be on a volume every rank shares",
        name, checkpoints.string()));
  }
  if (resume_from) {
    st = restore_checkpoint(resume_from->dir, trainer, best);
    log.write(Json{{"event", "resume"}, {"adapter", name}, {"step", st.step}});
  }

  Progress progress({.label = fmt::format("train {}", name),
                     .total_bytes = static_cast<uint64_t>(total_steps),
                     .enabled = options.progress && group.is_main(),
                     .steps = true});
  const auto start = Clock::now();
  const int64_t tokens_before = st.tokens, steps_before = st.step;
  std::vector<size_t> order = st.epoch >= 0
                                  ? permutation(rows.size(), epoch_seed(config.seed, st.epoch))
                                  : std::vector<size_t>();

  auto evaluate = [&](int64_t step) {
    if (validation_batches.empty()) return;
    const EvalResult r = trainer.evaluate(validation_batches);
    log.write(Json{{"event", "eval"},
                   {"adapter", name},
                   {"step", step},
                   {"validation_loss", r.loss},
                   {"validation_perplexity", std::exp(r.loss)},
                   {"validation_targets", r.targets}});
    log.scalar(name + "/validation_loss", r.loss, step);
    log.scalar(name + "/validation_perplexity", std::exp(r.loss), step);
    if (r.loss < st.best_loss) {
      st.best_loss = r.loss;
      st.best_step = step;
      best = snapshot(trainer.adapter());
      st.evaluations_without_gain = 0;
    } else {
      ++st.evaluations_without_gain;
    }
  };

  // Step 0 is the base model (B = 0): the loss tuning has to beat, and the
  // adapter published if it never does.
  if (!resume_from) evaluate(0);
  while (st.step < total_steps) {
    const int64_t step = st.step + 1;
    std::vector<Batch> micro;
    for (int64_t m = 0; m < micro_per_step; ++m) {
      if (st.cursor >= rows.size()) {
        ++st.epoch;
        order = permutation(rows.size(), epoch_seed(config.seed, st.epoch));
        st.cursor = 0;
      }
      const size_t take = std::min(rows.size() - st.cursor, static_cast<size_t>(ac.batch_size));
      if (m / ac.gradient_accumulation == group.rank()) {
        std::vector<PackedRow> chosen;
        for (size_t i = 0; i < take; ++i) chosen.push_back(rows[order[st.cursor + i]]);
        micro.push_back(make_batch(chosen, 0, chosen.size()));
      }
      st.cursor += take;
    }
    at::manual_seed(step_seed(config.seed, slot, step, group.rank()));  // LoRA dropout masks
    const StepResult r = trainer.step(micro);
    st.step = step;
    st.tokens += r.tokens;
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    outcome.last_train_loss = r.loss;
    outcome.tokens_per_second =
        seconds > 0 ? static_cast<double>(st.tokens - tokens_before) / seconds : 0;
    log.write(Json{{"event", "step"},
                   {"adapter", name},
                   {"step", step},
                   {"epoch", st.epoch},
                   {"loss", r.loss},
                   {"learning_rate", r.learning_rate},
                   {"grad_norm", r.grad_norm},
                   {"tokens", r.tokens},
                   {"tokens_per_second", outcome.tokens_per_second},
                   {"seconds", seconds},
                   {"eta_seconds", seconds / static_cast<double>(step - steps_before) *
                                       static_cast<double>(total_steps - step)}});
    log.scalar(name + "/loss", r.loss, step);
    log.scalar(name + "/learning_rate", r.learning_rate, step);
    log.scalar(name + "/grad_norm", r.grad_norm, step);
    log.scalar(name + "/tokens_per_second", outcome.tokens_per_second, step);
    progress.set_detail(
        fmt::format("loss {:.3f}, {:.0f} tokens/s", r.loss, outcome.tokens_per_second));
    progress.update(static_cast<uint64_t>(step), static_cast<uint64_t>(st.tokens));
    if (ac.eval_every > 0 && step % ac.eval_every == 0 && step < total_steps) {
      evaluate(step);
      if (ac.patience > 0 && st.evaluations_without_gain >= ac.patience) {
        outcome.stopped_early = true;
        break;
      }
    }
    if (ac.checkpoint_every > 0 && step % ac.checkpoint_every == 0 && group.is_main()) {
      save_checkpoint(checkpoints / fmt::format("step-{}", step), trainer, best, st);
    }
    // A signal to any rank stops them all after the same step.
    const bool cancel = options.cancel != nullptr && options.cancel->load();
    if (group.all_reduce(std::vector<double>{cancel ? 1.0 : 0.0}, Reduce::kMax)[0] > 0) {
      outcome.cancelled = true;
      break;
    }
  }
  outcome.steps = st.step;
  outcome.best_step = st.best_step;
  if (!outcome.stopped_early && !outcome.cancelled) evaluate(outcome.steps);
  progress.finish();
  const double best_loss = st.best_loss;
  outcome.best_validation_loss = std::isfinite(best_loss) ? best_loss : 0.0;
  outcome.best_step = st.best_step;
  if (!std::isfinite(best_loss)) best = snapshot(trainer.adapter());
  outcome.replicas_max_difference = replicas_max_difference(trainer.adapter(), group);
  if (outcome.replicas_max_difference > 1e-5) {
    throw std::runtime_error(fmt::format(
        "adapter '{}': the ranks' adapters differ by up to {} after training; not publishing", name,
        outcome.replicas_max_difference));
  }

  // Publish: the PEFT adapter and what it was made from, in one rename.
  outcome.adapter_dir = fs::path(config.output) / "adapters" / name;
  if (!group.is_main()) return outcome;
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
                       {"data_parallel",
                        {{"world_size", group.world_size()},
                         {"rows_per_step", rows_per_step},
                         {"replicas_max_difference", outcome.replicas_max_difference}}},
                       {"config", train_config_to_json(config)["adapters"][name]}};
  write_file_atomic(staging.path() / "training.json", record.dump(2) + "\n");
  staging.commit();
  log.write(Json{{"event", "done"}, {"adapter", name}, {"record", record}});
  return outcome;
}

}  // namespace

TrainOutcome run_training(const TrainConfig& given, const TrainRunOptions& options) {
  // The run records absolute paths, so `vitrine eval` and a resume work
  // from any directory.
  TrainConfig config = given;
  config.base_model = fs::absolute(config.base_model).lexically_normal().string();
  config.dataset = fs::absolute(config.dataset).lexically_normal().string();
  config.output = fs::absolute(config.output).lexically_normal().string();
  models::init_runtime({.threads = config.threads, .device = config.device});
  const fs::path base(config.base_model), dataset(config.dataset), output(config.output);
  if (!fs::exists(dataset / "stats.json")) {
    throw std::runtime_error(fmt::format(
        "'{}' is not a dataset made by `vitrine prepare` (no stats.json)", dataset.string()));
  }
  DataParallel group(options.data_parallel);
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
  const Json fingerprints = {
      {"base_model", files_fingerprint({base / "config.json", base / "model.safetensors"})}};
  models::LlamaForCausalLM model = models::load_llama(base, config.device);
  const auto tokenizer = models::load_tokenizer(base);
  const models::ChatFamily family = models::detect_chat_family(base);
  RunLog log = group.is_main() ? RunLog(output, options.on_event) : RunLog();
  TrainOutcome outcome;
  outcome.main_rank = group.is_main();
  int slot = 0;
  for (const auto& [name, ac] : config.adapters) {
    outcome.adapters.push_back(train_adapter(config, name, ac, slot++, model, *tokenizer, family,
                                             fingerprints, log, group, options));
    if (outcome.adapters.back().cancelled) return outcome;
  }
  if (config.classifier_enabled && group.is_main()) {
    outcome.classifier_dir = output / "classifier";
    outcome.classifier =
        train_classifier(dataset, outcome.classifier_dir, config.classifier, config.seed);
    outcome.classifier_trained = true;
    const ClassifierReport& r = outcome.classifier;
    log.write(Json{{"event", "classifier"},
                   {"test_accuracy", r.test_accuracy},
                   {"test_hard", r.test_hard},
                   {"test_hard_accuracy", r.test_hard_accuracy},
                   {"validation_accuracy", r.validation_accuracy},
                   {"microseconds_per_decision", r.microseconds_per_decision}});
  }
  return outcome;
}

}  // namespace vitrine::training
