// What `vitrine train` does, as configs/train.yaml spells it: the base
// model, the dataset, and per adapter its LoRA shape, optimizer, schedule,
// batching and evaluation. Defaults here are the values of
// configs/train.yaml (a test keeps the two equal); every knob is commented
// there with what it trades.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "prompts/prompt_format.h"
#include "training/classifier_training.h"
#include "training/lora_trainer.h"

namespace vitrine::training {

struct AdapterTrainConfig {
  std::string task;  // describe or qa: which tasks/<task>/ files it learns
  // qa prompts: none (closed-book), title or description before the question
  // (prompts::Grounding); recorded in the adapter's prompt_format.json
  std::string grounding = "none";
  int64_t max_description_chars = 1200;  // grounding description: cut at a word after this
                                         // many bytes (the prompt must leave room for the answer)
  // LoRA shape
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0.05;
  bool rslora = false;
  std::vector<std::string> target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                             "gate_proj", "up_proj", "down_proj"};
  OptimizerConfig optimizer;
  // Data and batching
  int64_t epochs = 3;                 // passes over the training rows (max_steps wins when set)
  int64_t max_steps = 0;              // 0 = epochs decide
  int64_t batch_size = 8;             // rows per micro-batch
  int64_t gradient_accumulation = 1;  // micro-batches per optimizer step
  int64_t max_seq_len = 256;          // tokens per row
  bool packing = true;                // several examples per row, kept apart
  int64_t train_examples = 0;         // first N training examples (0 = all)
  int64_t validation_examples = 256;  // validation examples for the loss (0 = all)
  // Evaluation, checkpoints, stopping
  int64_t eval_every = 50;         // steps between validation losses (0 = only at the end)
  int64_t checkpoint_every = 100;  // steps between checkpoints (0 = none)
  int64_t patience = 0;            // evaluations without improvement before stopping (0 = never)
};

struct TrainConfig {
  std::string base_model = "../shared/models/stories260K-hf";
  std::string dataset = "out/dataset";
  std::string output = "out/run";
  uint64_t seed = 1;
  int threads = 0;  // torch threads, 0 = cores
  std::string device = "cpu";
  std::string base_dtype = "auto";                // auto, bf16 or f32 (models::BaseDtype)
  std::string activation_checkpointing = "auto";  // auto, always or never (memory_estimate.h)
  bool bf16_compute = false;       // a bf16 base's products on bf16 activations and gradients too
  std::string end_token = "auto";  // auto, eos or bos: what completions end with (end_token.h)
  double memory_limit_gb = 0;      // refuse runs estimated above; 0 = what is free
  std::map<std::string, AdapterTrainConfig> adapters;  // by adapter name (describe, qa, ...)
  bool classifier_enabled = true;                      // train the router's classifier too
  ClassifierTrainConfig classifier;
};

// The built-in configuration: describe, qa (closed-book) and qa_grounded
// (grounding description), as configs/train.yaml.
TrainConfig default_train_config();

// Applies a config JSON (from YAML) over `config`; unknown keys and wrong
// types throw std::invalid_argument naming the key. Adapters named in the
// JSON replace the built-in list.
void apply_train_config(const nlohmann::json& json, TrainConfig& config);
nlohmann::ordered_json train_config_to_json(const TrainConfig& config);
// Throws std::invalid_argument unless `name` is [a-z0-9][a-z0-9_-]* and at
// most 64 characters: an adapter's name becomes a directory name.
void check_adapter_name(const std::string& name);
// The prompt format an adapter of `config` learns (its task and qa
// grounding), as its prompt_format.json records it.
prompts::PromptFormat prompt_format_of(const AdapterTrainConfig& config);
// One adapter's section of train_config_to_json (adapters.<name>).
nlohmann::ordered_json adapter_train_config_to_json(const AdapterTrainConfig& config);

}  // namespace vitrine::training
