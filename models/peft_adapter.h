// PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors, read
// and written with PEFT's exact key names
// (base_model.model.<module path>.lora_A.weight [r, in] and .lora_B.weight
// [out, r]), attached to a Llama under a slot, or merged into its weights.
//
// An adapter written here loads in PEFT (and so in vLLM and llama.cpp's
// converter), and PEFT's load here. Not goals: DoRA, per-module rank or alpha
// patterns, trained biases, modules_to_save (all refused with a clear error).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "models/llama.h"
#include "models/lora.h"
#include "models/peft_config.h"

namespace vitrine::models {

struct PeftAdapter {
  PeftAdapterConfig config;
  std::map<std::string, LoraWeights> modules;  // by module path, "model.layers.0.self_attn.q_proj"
};

// Reads a PEFT adapter directory. Throws std::runtime_error naming the file
// and key for anything that is not a plain LoRA adapter.
PeftAdapter load_peft_adapter(const std::filesystem::path& dir);

// Writes `adapter` as PEFT would (adapter_config.json with PEFT's fields,
// adapter_model.safetensors), each file atomically.
void save_peft_adapter(const std::filesystem::path& dir, const PeftAdapter& adapter);

// Attaches `adapter` to `model` under `slot` (replacing what was there).
// Throws std::runtime_error when a module is not in the model or a shape does
// not fit ("...: adapter for another base?"); the model is unchanged then.
void attach_adapter(LlamaForCausalLM& model, const PeftAdapter& adapter, int slot);

// Removes whatever adapter is in `slot` (nothing when the slot is empty).
void detach_adapter(LlamaForCausalLM& model, int slot);

// The adapter in `slot` of `model`, as a PeftAdapter to save (after training).
PeftAdapter extract_adapter(LlamaForCausalLM& model, int slot, const PeftAdapterConfig& config);

// Folds `slot` into the base weights (W += scaling·B·A) and drops it.
void merge_adapter(LlamaForCausalLM& model, int slot);

}  // namespace vitrine::models
