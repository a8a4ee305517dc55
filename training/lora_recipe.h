// The LoRA fine-tuning recipe for one adapter, in torchtune's manner: the
// building blocks live elsewhere (examples.h for data, lora_trainer.h for
// the optimizer step, checkpoint.h, run_log.h), and this class only puts
// them in order, one stage per method:
//
//   published_before  --resume: an adapter published already is kept
//   setup_data        task files -> packed rows, validation batches, step counts
//   setup_model       a fresh PEFT-initialised adapter and its AdamW
//   setup_resume      --resume: the latest checkpoint's adapter, optimizer, loop state
//   train             the step loop: shard, step, evaluate / stop early,
//                     checkpoint, cancel; then the final evaluation
//   finish            the best adapter, and the ranks' agreement on it
//   publish           adapters/<name>: PEFT files, training.json and the prompt format
//                     (prompt_format.json: what serving must ask it in), one rename
//
// Data-parallel: every rank runs every stage; the collectives (agree,
// all_reduce, broadcast) come in the same order on all ranks, and only
// rank 0 writes files. Not goals: training several adapters at once, or
// the base model's weights.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "models/llama.h"
#include "models/peft_adapter.h"
#include "models/tokenizer/chat_format.h"
#include "models/tokenizer/tokenizer.h"
#include "training/checkpoint.h"
#include "training/data_parallel.h"
#include "training/examples.h"
#include "training/lora_trainer.h"
#include "training/run_log.h"
#include "training/train_config.h"
#include "training/train_run.h"
#include "training/training_event.h"

namespace vitrine {
class Progress;
}

namespace vitrine::training {

// What every adapter of a run shares (all outlive the recipe).
struct RunContext {
  const TrainConfig& config;           // the run's config, paths absolute
  models::LlamaForCausalLM& model;     // the base; each adapter trains in its own slot
  const models::Tokenizer& tokenizer;  // the base's
  models::ChatFamily family;           // the base's chat format
  std::string base_model_fingerprint;  // of its config.json and weight files
  RunLog& log;                         // rank 0's metrics and TensorBoard; others drop events
  DataParallel& group;                 // the data-parallel ranks (world size 1: alone)
  const TrainRunOptions& options;      // progress, cancel, resume
};

class AdapterRecipe {
 public:
  // Adapter `name` of the run, configured by `config`, in model slot `slot`.
  AdapterRecipe(const RunContext& run, std::string name, const AdapterTrainConfig& config,
                int slot);
  ~AdapterRecipe();
  AdapterRecipe(const AdapterRecipe&) = delete;
  AdapterRecipe& operator=(const AdapterRecipe&) = delete;

  // Every stage in order; once per recipe.
  AdapterOutcome run();

 private:
  using Clock = std::chrono::steady_clock;

  // The stages.
  std::optional<AdapterOutcome> published_before();
  void setup_data();
  void setup_model();
  void setup_resume();
  void train();
  void finish();
  AdapterOutcome publish();

  // Pieces of the step loop.
  std::vector<Batch> next_micro_batches();
  void train_step(int64_t step, Progress& progress);
  void evaluate(int64_t step);
  bool patience_ran_out() const;
  void save_checkpoint_if_due(int64_t step);
  bool cancel_requested();
  AdapterRecord record() const;

  std::filesystem::path published_dir() const;
  std::filesystem::path checkpoints_dir() const;

  const RunContext& run_;
  const std::string name_;
  const AdapterTrainConfig& config_;
  const int slot_;

  // setup_data
  prompts::PromptFormat format_;  // what the adapter learns: prompts and end token
  StartEvent started_;            // what the data came to, and the step counts
  std::string dataset_fingerprint_;
  std::vector<PackedRow> rows_;
  std::vector<Batch> validation_batches_;
  int64_t micro_per_step_ = 0;  // micro-batches a step takes over all ranks
  // setup_model
  std::optional<LoraTrainer> trainer_;
  models::PeftAdapter best_;  // the adapter with the lowest validation loss so far
  // setup_resume, train
  LoopState state_;
  bool resumed_ = false;
  std::vector<size_t> order_;  // the current epoch's shuffled row order
  Clock::time_point started_at_;
  int64_t tokens_before_ = 0;  // tokens and steps done before this process took over
  int64_t steps_before_ = 0;
  AdapterOutcome outcome_;
};

}  // namespace vitrine::training
