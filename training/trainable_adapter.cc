#include "training/trainable_adapter.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace vitrine::training {

std::vector<at::Tensor> TrainableAdapter::tensors() const {
  std::vector<at::Tensor> out;
  for (const auto& [name, t] : parameters) out.push_back(t);
  return out;
}

models::PeftAdapter init_lora_adapter(models::LlamaForCausalLM& model,
                                      const models::PeftAdapterConfig& config, uint64_t seed) {
  at::NoGradGuard no_grad;
  at::Generator generator = at::detail::createCPUGenerator(seed);
  models::PeftAdapter adapter;
  adapter.config = config;
  for (auto& [path, module] : model->projections()) {
    const std::string leaf = path.substr(path.rfind('.') + 1);
    if (std::find(config.target_modules.begin(), config.target_modules.end(), leaf) ==
        config.target_modules.end()) {
      continue;
    }
    const int64_t out = module->out_features(), in = module->in_features();
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    at::Tensor a = at::empty({config.r, in}, at::kFloat);
    a.uniform_(-bound, bound, generator);
    adapter.modules[path] = {.a = a, .b = at::zeros({out, config.r}), .scaling = config.scaling()};
  }
  if (adapter.modules.empty()) {
    throw std::invalid_argument(fmt::format("LoRA target modules [{}] match no projection",
                                            fmt::join(config.target_modules, ", ")));
  }
  return adapter;
}

TrainableAdapter make_trainable(models::LlamaForCausalLM& model, const models::PeftAdapter& start,
                                int slot) {
  const auto device = model->lm_head_weight().device();
  models::PeftAdapter copy;
  copy.config = start.config;
  TrainableAdapter trainable;
  trainable.slot = slot;
  trainable.config = start.config;
  for (const auto& [path, w] : start.modules) {
    models::LoraWeights t;
    t.a = w.a.detach().to(device, at::kFloat).clone().requires_grad_(true);
    t.b = w.b.detach().to(device, at::kFloat).clone().requires_grad_(true);
    t.scaling = start.config.scaling();
    t.dropout = start.config.lora_dropout;
    const std::string key = "base_model.model." + path;
    trainable.parameters.emplace_back(key + ".lora_A.weight", t.a);
    trainable.parameters.emplace_back(key + ".lora_B.weight", t.b);
    trainable.modules.push_back(path);
    copy.modules[path] = t;
  }
  models::attach_adapter(model, copy, slot);
  return trainable;
}

models::PeftAdapter snapshot(const TrainableAdapter& adapter) {
  models::PeftAdapter out;
  out.config = adapter.config;
  for (size_t m = 0; m < adapter.modules.size(); ++m) {
    out.modules[adapter.modules[m]] = {
        .a = adapter.parameters[2 * m].second.detach().to(at::kCPU).clone(),
        .b = adapter.parameters[2 * m + 1].second.detach().to(at::kCPU).clone(),
        .scaling = adapter.config.scaling()};
  }
  return out;
}

}  // namespace vitrine::training
