#include "training/lora_recipe.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

#include "common/atomic_output.h"
#include "common/progress.h"
#include "common/stable_hash.h"
#include "common/text_file.h"
#include "prompts/prompts.h"
#include "training/end_token.h"
#include "training/trainable_adapter.h"

namespace vitrine::training {
namespace fs = std::filesystem;
namespace {

using Json = nlohmann::ordered_json;

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

uint64_t epoch_seed(uint64_t seed, int64_t epoch) {
  return seed * 1000003 + static_cast<uint64_t>(epoch);
}

// The seed of the dropout masks of one optimizer step on one rank: drawn
// afresh each step, so a resumed run draws what the uninterrupted one did
// without saving generator state, and ranks draw different masks.
uint64_t step_seed(uint64_t seed, int slot, int64_t step, int rank) {
  return stable_hash64(fmt::format("dropout/{}/{}/{}/{}", seed, slot, step, rank));
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

// The outcome a published training.json records.
AdapterOutcome outcome_of_record(const std::string& name, const Json& record, const fs::path& dir) {
  AdapterOutcome done;
  done.name = name;
  done.steps = record["steps"];
  done.best_step = record["best_step"];
  done.best_validation_loss = record["best_validation_loss"];
  done.last_train_loss = record["last_train_loss"];
  done.stopped_early = record["stopped_early"];
  done.tokens_per_second = record["tokens_per_second"];
  done.adapter_dir = dir;
  return done;
}

}  // namespace

AdapterRecipe::AdapterRecipe(const RunContext& run, std::string name,
                             const AdapterTrainConfig& config, int slot)
    : run_(run), name_(std::move(name)), config_(config), slot_(slot) {
  outcome_.name = name_;
}

AdapterRecipe::~AdapterRecipe() = default;

fs::path AdapterRecipe::published_dir() const {
  return fs::path(run_.config.output) / "adapters" / name_;
}

fs::path AdapterRecipe::checkpoints_dir() const {
  return fs::path(run_.config.output) / "checkpoints" / name_;
}

AdapterOutcome AdapterRecipe::run() {
  if (std::optional<AdapterOutcome> done = published_before()) return *done;
  setup_data();
  setup_model();
  run_.log.record(started_);
  setup_resume();
  train();
  finish();
  return publish();
}

// An adapter that finished before an interruption (not cancelled) is kept
// as it is. Every rank must see the same run directory.
std::optional<AdapterOutcome> AdapterRecipe::published_before() {
  std::optional<Json> finished;
  const fs::path published = published_dir();
  if (run_.options.resume && fs::exists(published / "training.json")) {
    Json record = Json::parse(read_whole_file(published / "training.json", "--resume"));
    if (!record.value("cancelled", false)) finished = std::move(record);
  }
  if (!run_.group.agree(finished ? 1.0 : 0.0)) {
    throw std::runtime_error(fmt::format(
        "--resume: ranks disagree on whether adapter '{}' is finished: the run directory '{}' must "
        "be on a volume every rank shares",
        name_, run_.config.output));
  }
  if (!finished) return std::nullopt;
  return outcome_of_record(name_, *finished, published);
}

// The task's examples, packed into rows; the validation batches; and how
// many rows and micro-batches a step takes over all ranks.
void AdapterRecipe::setup_data() {
  format_ = prompt_format_of(config_);
  const prompts::PromptFormat& format = format_;
  const fs::path dataset(run_.config.dataset);
  const fs::path tasks = dataset / "tasks" / std::string(prompts::task_name(format.task));
  // The prompts of a split: grounded ones with that split's products.
  auto prompter = [&](std::string_view split) {
    std::shared_ptr<const ProductTexts> products;
    if (format.task == prompts::Task::kQa && format.qa.grounding != prompts::Grounding::kNone) {
      products = std::make_shared<const ProductTexts>(
          read_product_texts(product_texts_file(dataset, split)));
    }
    return TaskPrompter(format, std::move(products));
  };
  // The end token, measured on the first training completions when auto,
  // in rows long enough to hold most of them whole.
  const int64_t probe_len = std::min<int64_t>(std::max<int64_t>(config_.max_seq_len, 256),
                                              run_.model->config().max_position_embeddings);
  const ExampleSet probe = load_examples(tasks / "train.jsonl", prompter("train"), run_.tokenizer,
                                         run_.family, probe_len, kEndTokenTexts * 4);
  format_.end = choose_end_token(run_.model, run_.tokenizer, probe.examples,
                                 parse_end_token_setting(run_.config.end_token));
  if (run_.options.progress && run_.group.is_main()) {
    std::fprintf(stderr, "vitrine train: %s: completions end with %s\n", name_.c_str(),
                 describe(format_.end).c_str());
  }
  const TaskPrompter train_prompter = prompter("train");
  const ExampleSet train = load_examples(tasks / "train.jsonl", train_prompter, run_.tokenizer,
                                         run_.family, config_.max_seq_len, config_.train_examples);
  const ExampleSet validation =
      load_examples(tasks / "validation.jsonl", prompter("validation"), run_.tokenizer, run_.family,
                    config_.max_seq_len, config_.validation_examples);
  if (train.examples.empty()) {
    throw std::runtime_error(fmt::format("adapter '{}': no training examples in '{}'", name_,
                                         (tasks / "train.jsonl").string()));
  }
  std::vector<fs::path> data_files = {tasks / "train.jsonl", tasks / "validation.jsonl"};
  if (train_prompter.format().qa.grounding != prompts::Grounding::kNone) {
    data_files.push_back(product_texts_file(dataset, "train"));
    data_files.push_back(product_texts_file(dataset, "validation"));
  }
  dataset_fingerprint_ = files_fingerprint(data_files);
  rows_ = pack_examples(train.examples, config_.max_seq_len, config_.packing);
  validation_batches_ = batches_of(
      pack_examples(validation.examples, config_.max_seq_len, config_.packing), config_.batch_size);

  // A step's micro-batches, over all ranks; rank r takes the r-th run of
  // gradient_accumulation of them.
  micro_per_step_ = config_.gradient_accumulation * run_.group.world_size();
  const int64_t rows_per_step = config_.batch_size * micro_per_step_;
  const int64_t steps_per_epoch = std::max<int64_t>(
      1, (static_cast<int64_t>(rows_.size()) + rows_per_step - 1) / rows_per_step);
  started_ = {
      .adapter = name_,
      .task = config_.task,
      .train_examples = static_cast<int64_t>(train.examples.size()),
      .train_rows = static_cast<int64_t>(rows_.size()),
      .truncated = train.truncated,
      .cut_mid_sentence = train.cut_mid_sentence,
      .ended = std::count_if(train.examples.begin(), train.examples.end(),
                             [](const Example& ex) { return ex.ended; }),
      .end_token = format_.end.piece,
      .end_token_id = format_.end.id,
      .dropped_long_prompt = train.dropped_long_prompt,
      .validation_examples = static_cast<int64_t>(validation.examples.size()),
      .world_size = run_.group.world_size(),
      .rows_per_step = rows_per_step,
      .total_steps = config_.max_steps > 0 ? config_.max_steps : config_.epochs * steps_per_epoch};
}

// A fresh adapter as PEFT initialises one (seeded per slot), its AdamW with
// the schedule over the adapter's steps, and the base model as the best
// adapter so far.
void AdapterRecipe::setup_model() {
  models::PeftAdapterConfig peft;
  peft.r = config_.rank;
  peft.lora_alpha = config_.alpha;
  peft.lora_dropout = config_.dropout;
  peft.use_rslora = config_.rslora;
  peft.target_modules = config_.target_modules;
  peft.base_model_name_or_path = run_.config.base_model;
  OptimizerConfig optimizer = config_.optimizer;
  optimizer.total_steps = started_.total_steps;
  models::LlamaForCausalLM& model = run_.model;
  trainer_.emplace(
      model, make_trainable(model, init_lora_adapter(model, peft, run_.config.seed + slot_), slot_),
      optimizer);
  trainer_->set_data_parallel(&run_.group);
  best_ = snapshot(trainer_->adapter());
}

// --resume: continue from the latest checkpoint, which every rank must see.
void AdapterRecipe::setup_resume() {
  const fs::path checkpoints = checkpoints_dir();
  const std::optional<CheckpointDir> from =
      run_.options.resume ? latest_checkpoint(checkpoints) : std::nullopt;
  if (!run_.group.agree(from ? static_cast<double>(from->step) : 0.0)) {
    throw std::runtime_error(fmt::format(
        "--resume: ranks found different checkpoints of adapter '{}' in '{}': the run directory "
        "must be on a volume every rank shares",
        name_, checkpoints.string()));
  }
  if (!from) return;
  state_ = restore_checkpoint(from->dir, *trainer_, best_);
  resumed_ = true;
  run_.log.record(ResumeEvent{.adapter = name_, .step = state_.step});
  if (state_.epoch >= 0)
    order_ = permutation(rows_.size(), epoch_seed(run_.config.seed, state_.epoch));
}

// Step 0 is the base model (B = 0): the loss tuning has to beat, and the
// adapter published if it never does. Then steps until the last, patience
// running out, or a cancel; then the final evaluation.
void AdapterRecipe::train() {
  Progress progress({.label = fmt::format("train {}", name_),
                     .total_bytes = static_cast<uint64_t>(started_.total_steps),
                     .enabled = run_.options.progress && run_.group.is_main(),
                     .steps = true});
  started_at_ = Clock::now();
  tokens_before_ = state_.tokens;
  steps_before_ = state_.step;
  if (!resumed_) evaluate(0);
  while (state_.step < started_.total_steps) {
    const int64_t step = state_.step + 1;
    train_step(step, progress);
    if (config_.eval_every > 0 && step % config_.eval_every == 0 && step < started_.total_steps) {
      evaluate(step);
      if (patience_ran_out()) {
        outcome_.stopped_early = true;
        break;
      }
    }
    save_checkpoint_if_due(step);
    if (cancel_requested()) {
      outcome_.cancelled = true;
      break;
    }
  }
  if (!outcome_.stopped_early && !outcome_.cancelled) evaluate(state_.step);
  progress.finish();
}

// This rank's share of the next step's micro-batches: the epoch's shuffled
// order is cut into micro-batches exactly as one process would cut it (a
// new epoch reshuffles), and rank r takes the r-th run of
// gradient_accumulation of them.
std::vector<Batch> AdapterRecipe::next_micro_batches() {
  std::vector<Batch> micro;
  for (int64_t m = 0; m < micro_per_step_; ++m) {
    if (state_.cursor >= rows_.size()) {
      ++state_.epoch;
      order_ = permutation(rows_.size(), epoch_seed(run_.config.seed, state_.epoch));
      state_.cursor = 0;
    }
    const size_t take =
        std::min(rows_.size() - state_.cursor, static_cast<size_t>(config_.batch_size));
    if (m / config_.gradient_accumulation == run_.group.rank()) {
      std::vector<PackedRow> chosen;
      for (size_t i = 0; i < take; ++i) chosen.push_back(rows_[order_[state_.cursor + i]]);
      micro.push_back(make_batch(chosen, 0, chosen.size()));
    }
    state_.cursor += take;
  }
  return micro;
}

void AdapterRecipe::train_step(int64_t step, Progress& progress) {
  const std::vector<Batch> micro = next_micro_batches();
  at::manual_seed(step_seed(run_.config.seed, slot_, step, run_.group.rank()));  // dropout masks
  const StepResult r = trainer_->step(micro);
  state_.step = step;
  state_.tokens += r.tokens;
  const double seconds = std::chrono::duration<double>(Clock::now() - started_at_).count();
  outcome_.last_train_loss = r.loss;
  outcome_.tokens_per_second =
      seconds > 0 ? static_cast<double>(state_.tokens - tokens_before_) / seconds : 0;
  run_.log.record(StepEvent{.adapter = name_,
                            .step = step,
                            .epoch = state_.epoch,
                            .loss = r.loss,
                            .learning_rate = r.learning_rate,
                            .grad_norm = r.grad_norm,
                            .tokens = r.tokens,
                            .real_tokens = r.real_tokens,
                            .tokens_per_second = outcome_.tokens_per_second,
                            .seconds = seconds,
                            .eta_seconds = seconds / static_cast<double>(step - steps_before_) *
                                           static_cast<double>(started_.total_steps - step)});
  progress.set_detail(
      fmt::format("loss {:.3f}, {:.0f} tokens/s", r.loss, outcome_.tokens_per_second));
  progress.update(static_cast<uint64_t>(step), static_cast<uint64_t>(state_.tokens));
}

// The validation loss after `step` steps; a new best keeps a snapshot of
// the adapter, anything else counts towards patience.
void AdapterRecipe::evaluate(int64_t step) {
  if (validation_batches_.empty()) return;
  const EvalResult r = trainer_->evaluate(validation_batches_);
  run_.log.record(EvalEvent{.adapter = name_,
                            .step = step,
                            .validation_loss = r.loss,
                            .validation_perplexity = std::exp(r.loss),
                            .validation_targets = r.targets});
  if (r.loss < state_.best_loss) {
    state_.best_loss = r.loss;
    state_.best_step = step;
    best_ = snapshot(trainer_->adapter());
    state_.evaluations_without_gain = 0;
  } else {
    ++state_.evaluations_without_gain;
  }
}

bool AdapterRecipe::patience_ran_out() const {
  return config_.patience > 0 && state_.evaluations_without_gain >= config_.patience;
}

// Rank 0 alone writes checkpoints.
void AdapterRecipe::save_checkpoint_if_due(int64_t step) {
  if (config_.checkpoint_every > 0 && step % config_.checkpoint_every == 0 &&
      run_.group.is_main()) {
    save_checkpoint(checkpoints_dir() / fmt::format("step-{}", step), *trainer_, best_, state_);
  }
}

// A signal to any rank stops them all after the same step.
bool AdapterRecipe::cancel_requested() {
  const bool cancel = run_.options.cancel != nullptr && run_.options.cancel->load();
  return run_.group.all_reduce(std::vector<double>{cancel ? 1.0 : 0.0}, Reduce::kMax)[0] > 0;
}

// The adapter to publish: the one with the lowest validation loss, or the
// last one when nothing was evaluated; checked to be the same on every rank.
void AdapterRecipe::finish() {
  outcome_.steps = state_.step;
  outcome_.best_step = state_.best_step;
  const bool evaluated = std::isfinite(state_.best_loss);
  outcome_.best_validation_loss = evaluated ? state_.best_loss : 0.0;
  if (!evaluated) best_ = snapshot(trainer_->adapter());
  outcome_.replicas_max_difference = replicas_max_difference(trainer_->adapter(), run_.group);
  if (outcome_.replicas_max_difference > 1e-5) {
    throw std::runtime_error(fmt::format(
        "adapter '{}': the ranks' adapters differ by up to {} after training; not publishing",
        name_, outcome_.replicas_max_difference));
  }
  outcome_.adapter_dir = published_dir();
}

AdapterRecord AdapterRecipe::record() const {
  return {
      .adapter = name_,
      .task = config_.task,
      .fingerprints = {.base_model = run_.base_model_fingerprint, .dataset = dataset_fingerprint_},
      .seed = run_.config.seed,
      .steps = outcome_.steps,
      .best_step = outcome_.best_step,
      .best_validation_loss = outcome_.best_validation_loss,
      .best_validation_perplexity = std::exp(outcome_.best_validation_loss),
      .last_train_loss = outcome_.last_train_loss,
      .stopped_early = outcome_.stopped_early,
      .cancelled = outcome_.cancelled,
      .tokens_per_second = outcome_.tokens_per_second,
      .world_size = run_.group.world_size(),
      .rows_per_step = started_.rows_per_step,
      .replicas_max_difference = outcome_.replicas_max_difference,
      .config = config_};
}

// Rank 0 publishes the PEFT adapter and what it was made from, in one rename.
AdapterOutcome AdapterRecipe::publish() {
  if (!run_.group.is_main()) return outcome_;
  fs::create_directories(outcome_.adapter_dir.parent_path());
  StagingDir staging(outcome_.adapter_dir);
  models::save_peft_adapter(staging.path(), best_);
  const AdapterRecord published = record();
  write_file_atomic(staging.path() / "training.json", to_json(published).dump(2) + "\n");
  write_file_atomic(staging.path() / prompts::kPromptFormatFile,
                    prompts::prompt_format_to_json(format_).dump(2) + "\n");
  staging.commit();
  run_.log.record(DoneEvent{.record = published});
  return outcome_;
}

}  // namespace vitrine::training
