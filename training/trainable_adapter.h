// A LoRA adapter being trained: its A and B matrices as leaf tensors that
// receive gradients, installed in a model slot, with PEFT's key names so
// the optimizer state and checkpoints speak the adapter's language.
//
// Only these tensors are trained: the base weights never require gradients.
// Not goals: training biases, DoRA, embedding adapters.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "models/llama.h"
#include "models/peft_adapter.h"

namespace vitrine::training {

struct TrainableAdapter {
  int slot = 0;
  models::PeftAdapterConfig config;
  // (PEFT key, tensor): "base_model.model.<module>.lora_A.weight" [r, in]
  // and ".lora_B.weight" [out, r], in a fixed order (module path, A then B).
  std::vector<std::pair<std::string, at::Tensor>> parameters;
  // Module path of each A, B pair: parameters[2i] and [2i + 1] belong to modules[i].
  std::vector<std::string> modules;

  std::vector<at::Tensor> tensors() const;
};

// A fresh adapter as PEFT initialises one: every projection named in
// config.target_modules gets A ~ kaiming-uniform(a = sqrt(5)), i.e.
// U(-1/sqrt(in), 1/sqrt(in)), and B = 0, so training starts at the base
// model. `seed` makes the draw reproducible.
models::PeftAdapter init_lora_adapter(models::LlamaForCausalLM& model,
                                      const models::PeftAdapterConfig& config, uint64_t seed);

// Installs a copy of `start` in `slot` of `model` with gradients on (and
// the config's dropout for training) and returns its tensors. Throws like
// attach_adapter when the adapter does not fit the model.
TrainableAdapter make_trainable(models::LlamaForCausalLM& model, const models::PeftAdapter& start,
                                int slot);

// The trained adapter, detached, for saving.
models::PeftAdapter snapshot(const TrainableAdapter& adapter);

}  // namespace vitrine::training
