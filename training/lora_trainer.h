// One LoRA adapter trained on a Llama: optimizer steps over batches of
// token ids, as PEFT + transformers' Trainer take them.
//
// A step may accumulate several micro-batches; the loss is normalised by
// the targets of all of them together, so accumulating k micro-batches of
// size n is the same step as one batch of k·n. AdamW (decoupled weight
// decay), learning rate schedules as transformers' get_*_schedule_with_warmup,
// gradient clipping on the global norm. Only the adapter's tensors are
// stepped. Not goals: mixed precision, optimizer state sharding.
#pragma once

#include <torch/optim/adamw.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/llama.h"
#include "training/data_parallel.h"
#include "training/trainable_adapter.h"

namespace vitrine::training {

struct OptimizerConfig {
  double learning_rate = 2e-4;  // peak rate: higher learns faster, and diverges sooner
  double beta1 = 0.9;           // AdamW moment decays
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;        // decoupled decay of the adapter weights: a mild regulariser
  double max_grad_norm = 1.0;       // clip the global gradient norm to this; 0 = never clip
  std::string schedule = "cosine";  // constant, linear or cosine decay after warmup
  int64_t warmup_steps = 0;         // linear ramp from 0: steadies the first updates
  int64_t total_steps = 0;          // the schedule's length (for linear and cosine decay)
  double min_lr_ratio = 0.0;        // floor of the decay, as a fraction of the peak
};

// The rate multiplier at optimizer step `step` (0-based), as transformers'
// schedules compute it: step/warmup during warmup (so the first step of a
// warmup runs at rate 0), then 1 (constant), a linear or a cosine decay to
// min_lr_ratio at total_steps.
double schedule_factor(const OptimizerConfig& config, int64_t step);

// A batch of sequences of equal length: ids [batch, seq] (int64), labels
// [batch, seq] (int64, -100 = not a target; the model shifts them), and
// optionally segments [batch, seq] when rows pack several examples (see
// LlamaForCausalLMImpl::forward_packed).
struct Batch {
  at::Tensor ids;
  at::Tensor labels;
  at::Tensor segments{};  // undefined: one example per row
};

struct StepResult {
  double loss = 0;           // mean over the step's targets
  double grad_norm = 0;      // global L2 norm before clipping
  double learning_rate = 0;  // the rate this step used
  int64_t targets = 0;       // tokens that counted in the loss
  int64_t tokens = 0;        // tokens processed
  int64_t real_tokens = 0;   // of those, not padding (a batch pads its rows to the longest)
};

struct EvalResult {
  double loss = 0;  // mean over all targets
  int64_t targets = 0;
};

class LoraTrainer {
 public:
  LoraTrainer(models::LlamaForCausalLM model, TrainableAdapter adapter, OptimizerConfig config);

  // Trains as one replica of a data-parallel group (not owned; outlives
  // the trainer): each rank passes its own share of a step's micro-batches,
  // and the step, its loss and its counts are those of all ranks' batches
  // together, as one process taking them all would compute them.
  void set_data_parallel(DataParallel* group) { data_parallel_ = group; }

  // One optimizer step over these micro-batches (accumulated).
  StepResult step(const std::vector<Batch>& micro_batches);
  // Loss of the adapter on these batches, without gradients. With a
  // data-parallel group every rank passes all batches and evaluates its
  // share (every world_size-th batch); all get the total.
  EvalResult evaluate(const std::vector<Batch>& batches);

  int64_t steps_done() const { return steps_done_; }
  void set_steps_done(int64_t steps) { steps_done_ = steps; }  // when resuming
  torch::optim::AdamW& optimizer() { return *optimizer_; }
  const TrainableAdapter& adapter() const { return adapter_; }
  models::LlamaForCausalLM& model() { return model_; }

 private:
  at::Tensor logits_of(const Batch& batch, const models::RowAdapters& rows);

  models::LlamaForCausalLM model_;
  TrainableAdapter adapter_;
  OptimizerConfig config_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  DataParallel* data_parallel_ = nullptr;
  int64_t steps_done_ = 0;
};

}  // namespace vitrine::training
