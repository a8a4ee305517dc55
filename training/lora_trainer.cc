#include "training/lora_trainer.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <fmt/format.h>
#include <torch/nn/utils/clip_grad.h>

#include <cmath>
#include <numbers>
#include <stdexcept>

#include "training/lm_loss.h"

namespace vitrine::training {

double schedule_factor(const OptimizerConfig& c, int64_t step) {
  if (step < c.warmup_steps) {
    return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, c.warmup_steps));
  }
  if (c.schedule == "constant") return 1.0;
  const double span = static_cast<double>(std::max<int64_t>(1, c.total_steps - c.warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - c.warmup_steps) / span);
  double decay = 0;
  if (c.schedule == "linear") {
    decay = 1.0 - progress;
  } else if (c.schedule == "cosine") {
    decay = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  } else {
    throw std::invalid_argument(
        fmt::format("schedule '{}': expected constant, linear or cosine", c.schedule));
  }
  return c.min_lr_ratio + (1.0 - c.min_lr_ratio) * decay;
}

LoraTrainer::LoraTrainer(models::LlamaForCausalLM model, TrainableAdapter adapter,
                         OptimizerConfig config)
    : model_(std::move(model)), adapter_(std::move(adapter)), config_(std::move(config)) {
  schedule_factor(config_, 0);  // refuses an unknown schedule now, not at the first step
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      adapter_.tensors(), torch::optim::AdamWOptions(config_.learning_rate)
                              .betas({config_.beta1, config_.beta2})
                              .eps(config_.eps)
                              .weight_decay(config_.weight_decay));
}

at::Tensor LoraTrainer::logits_of(const Batch& b, const models::RowAdapters& rows) {
  return b.segments.defined() ? model_->forward_packed(b.ids, b.segments, rows)
                              : model_->forward(b.ids, nullptr, rows);  // [batch, seq, vocab]
}

StepResult LoraTrainer::step(const std::vector<Batch>& micro_batches) {
  if (micro_batches.empty()) throw std::invalid_argument("training step without a batch");
  model_->train();
  StepResult result;
  for (const Batch& b : micro_batches) {
    result.targets +=
        (b.labels.narrow(1, 1, b.labels.size(1) - 1) != kIgnoreLabel).sum().item<int64_t>();
    result.tokens += b.ids.numel();
    // Padding is a segment of its own, -1 (make_batch).
    result.real_tokens +=
        b.segments.defined() ? (b.segments >= 0).sum().item<int64_t>() : b.ids.numel();
  }
  if (data_parallel_ != nullptr) {  // the step's counts over all ranks
    const auto totals = data_parallel_->all_reduce({static_cast<double>(result.targets),
                                                    static_cast<double>(result.tokens),
                                                    static_cast<double>(result.real_tokens)});
    result.targets = static_cast<int64_t>(totals[0]);
    result.tokens = static_cast<int64_t>(totals[1]);
    result.real_tokens = static_cast<int64_t>(totals[2]);
  }
  if (result.targets == 0) throw std::invalid_argument("training step with no target tokens");
  optimizer_->zero_grad();
  double loss_sum = 0;
  for (const Batch& b : micro_batches) {
    const models::RowAdapters rows(static_cast<size_t>(b.ids.size(0)), adapter_.slot);
    const LossSum part = causal_lm_loss_sum(logits_of(b, rows), b.labels);
    RECORD_USER_SCOPE("vitrine::backward");
    (part.sum / static_cast<double>(result.targets)).backward();
    loss_sum += part.sum.item<double>();
  }
  RECORD_USER_SCOPE("vitrine::optimizer");
  const std::vector<at::Tensor> tensors = adapter_.tensors();
  if (data_parallel_ != nullptr) {
    // Each rank's gradient is its share of the step's mean; their sum is
    // the whole step's gradient.
    std::vector<at::Tensor> grads;
    for (const auto& t : tensors) {
      if (!t.grad().defined()) t.mutable_grad() = at::zeros_like(t);
      grads.push_back(t.grad());
    }
    data_parallel_->all_reduce_in_place(grads);
    loss_sum = data_parallel_->all_reduce(std::vector<double>{loss_sum})[0];
  }
  result.loss = loss_sum / static_cast<double>(result.targets);
  if (config_.max_grad_norm > 0) {
    result.grad_norm = torch::nn::utils::clip_grad_norm_(tensors, config_.max_grad_norm);
  } else {
    double squares = 0;
    for (const auto& t : tensors) {
      if (t.grad().defined()) squares += t.grad().pow(2).sum().item<double>();
    }
    result.grad_norm = std::sqrt(squares);
  }
  result.learning_rate = config_.learning_rate * schedule_factor(config_, steps_done_);
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(result.learning_rate);
  }
  optimizer_->step();
  ++steps_done_;
  return result;
}

EvalResult LoraTrainer::evaluate(const std::vector<Batch>& batches) {
  model_->eval();
  at::NoGradGuard no_grad;
  const size_t ranks = data_parallel_ != nullptr ? data_parallel_->world_size() : 1;
  const size_t rank = data_parallel_ != nullptr ? data_parallel_->rank() : 0;
  double loss_sum = 0, targets = 0;
  for (size_t i = rank; i < batches.size(); i += ranks) {
    const Batch& b = batches[i];
    const models::RowAdapters rows(static_cast<size_t>(b.ids.size(0)), adapter_.slot);
    const LossSum part = causal_lm_loss_sum(logits_of(b, rows), b.labels);
    loss_sum += part.sum.item<double>();
    targets += static_cast<double>(part.count);
  }
  if (data_parallel_ != nullptr) {
    const auto totals = data_parallel_->all_reduce({loss_sum, targets});
    loss_sum = totals[0];
    targets = totals[1];
  }
  EvalResult result;
  result.targets = static_cast<int64_t>(targets);
  result.loss = result.targets > 0 ? loss_sum / targets : 0.0;
  return result;
}

}  // namespace vitrine::training
