#include "trainer/training/lora_trainer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/utils/clip_grad.h>

#include <cmath>
#include <numbers>
#include <stdexcept>

#include "trainer/training/lm_loss.h"

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
  }
  if (result.targets == 0) throw std::invalid_argument("training step with no target tokens");
  optimizer_->zero_grad();
  double loss_sum = 0;
  for (const Batch& b : micro_batches) {
    const models::RowAdapters rows(static_cast<size_t>(b.ids.size(0)), adapter_.slot);
    const LossSum part = causal_lm_loss_sum(logits_of(b, rows), b.labels);
    (part.sum / static_cast<double>(result.targets)).backward();
    loss_sum += part.sum.item<double>();
  }
  result.loss = loss_sum / static_cast<double>(result.targets);
  const std::vector<at::Tensor> tensors = adapter_.tensors();
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
  EvalResult result;
  double loss_sum = 0;
  for (const Batch& b : batches) {
    const models::RowAdapters rows(static_cast<size_t>(b.ids.size(0)), adapter_.slot);
    const LossSum part = causal_lm_loss_sum(logits_of(b, rows), b.labels);
    loss_sum += part.sum.item<double>();
    result.targets += part.count;
  }
  result.loss = result.targets > 0 ? loss_sum / static_cast<double>(result.targets) : 0.0;
  return result;
}

}  // namespace vitrine::training
