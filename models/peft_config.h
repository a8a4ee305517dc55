// PEFT adapter_config.json: the LoRA settings of an adapter, read with the
// checks vitrine needs and written with the fields PEFT 0.13 writes, so an
// adapter written here loads in PEFT and PEFT's load here.
//
// Torch-free on purpose: the adapter loader (peft_adapter.h) reads the
// config through this file, and so can tools and tests that never touch a
// tensor. Not goals: DoRA, per-module rank or alpha patterns, trained biases,
// modules_to_save, fan_in_fan_out (all refused with a clear error).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine::models {

struct PeftAdapterConfig {
  int64_t r = 8;           // rank of A and B
  double lora_alpha = 16;  // scaling numerator: scaling = alpha / r (alpha / sqrt(r) with rsLoRA)
  double lora_dropout = 0.0;                // training only
  bool use_rslora = false;                  // rank-stabilised scaling
  std::vector<std::string> target_modules;  // projection names ("q_proj", ...)
  std::string base_model_name_or_path;      // recorded, not enforced: shapes are
  double scaling() const;
};

// Parses the text of an adapter_config.json; `config_path` only names the
// file in errors. Throws std::runtime_error ("adapter '<path>': ...") when the
// text is not JSON, a field has the wrong type, r is not > 0, or the config
// is anything other than a plain LoRA adapter.
PeftAdapterConfig parse_peft_config(std::string_view json_text,
                                    const std::filesystem::path& config_path);

// The adapter_config.json text for `config`, as PEFT writes it (2-space
// indent, trailing newline; target_modules sorted and deduplicated).
std::string peft_config_json(const PeftAdapterConfig& config);

}  // namespace vitrine::models
