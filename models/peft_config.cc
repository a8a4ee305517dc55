// adapter_config.json read and written; see the header.
#include "models/peft_config.h"

#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

namespace vitrine::models {
namespace fs = std::filesystem;
namespace {

[[noreturn]] void fail(const fs::path& file, const std::string& what) {
  throw std::runtime_error(fmt::format("adapter '{}': {}", file.string(), what));
}

// Refuses the PEFT features vitrine does not implement.
void refuse_unsupported(const nlohmann::json& j, const fs::path& config_path) {
  if (j.value("peft_type", std::string("LORA")) != "LORA")
    fail(config_path, "peft_type is not LORA");
  if (j.value("use_dora", false)) fail(config_path, "DoRA adapters are not supported");
  if (j.value("fan_in_fan_out", false))
    fail(config_path, "fan_in_fan_out (GPT-2 Conv1D layout) is not supported");
  if (j.value("bias", std::string("none")) != "none")
    fail(config_path, "trained biases (bias != none) are not supported");
  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    if (j.contains(key) && !j[key].is_null() && !j[key].empty()) {
      fail(config_path, fmt::format("per-module {} is not supported", key));
    }
  }
  if (j.contains("modules_to_save") && !j["modules_to_save"].is_null() &&
      !j["modules_to_save"].empty()) {
    fail(config_path, "modules_to_save is not supported");
  }
}

// r as an integer; a float r (8.0) is taken when it is a whole number in
// range, since converting anything else would be undefined.
int64_t read_rank(const nlohmann::json& r, const fs::path& config_path) {
  if (!r.is_number_float()) return r.get<int64_t>();
  const double d = r.get<double>();
  if (d != std::floor(d) || std::fabs(d) >= 0x1p62)
    fail(config_path, "r must be a whole number > 0");
  return static_cast<int64_t>(d);
}

}  // namespace

double PeftAdapterConfig::scaling() const {
  return use_rslora ? lora_alpha / std::sqrt(static_cast<double>(r))
                    : lora_alpha / static_cast<double>(r);
}

PeftAdapterConfig parse_peft_config(std::string_view json_text, const fs::path& config_path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    fail(config_path, std::string("not JSON: ") + e.what());
  }
  PeftAdapterConfig c;
  try {
    refuse_unsupported(j, config_path);
    c.r = read_rank(j.at("r"), config_path);
    c.lora_alpha = j.at("lora_alpha").get<double>();
    c.lora_dropout = j.value("lora_dropout", 0.0);
    c.use_rslora = j.value("use_rslora", false);
    c.base_model_name_or_path = j.value("base_model_name_or_path", std::string());
    if (j.at("target_modules").is_string()) {
      c.target_modules = {j["target_modules"].get<std::string>()};
    } else {
      c.target_modules = j["target_modules"].get<std::vector<std::string>>();
    }
  } catch (const nlohmann::json::exception& e) {
    fail(config_path, std::string("bad field: ") + e.what());
  }
  if (c.r <= 0) fail(config_path, "r must be > 0");
  return c;
}

std::string peft_config_json(const PeftAdapterConfig& c) {
  std::set<std::string> targets(c.target_modules.begin(), c.target_modules.end());
  // The fields PEFT 0.13 writes for a LoRA adapter, so that PEFT reads it back.
  nlohmann::ordered_json j = {
      {"alpha_pattern", nlohmann::json::object()},
      {"auto_mapping", nullptr},
      {"base_model_name_or_path", c.base_model_name_or_path},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"layer_replication", nullptr},
      {"layers_pattern", nullptr},
      {"layers_to_transform", nullptr},
      {"loftq_config", nlohmann::json::object()},
      {"lora_alpha", c.lora_alpha},
      {"lora_dropout", c.lora_dropout},
      {"megatron_config", nullptr},
      {"megatron_core", "megatron.core"},
      {"modules_to_save", nullptr},
      {"peft_type", "LORA"},
      {"r", c.r},
      {"rank_pattern", nlohmann::json::object()},
      {"revision", nullptr},
      {"target_modules", std::vector<std::string>(targets.begin(), targets.end())},
      {"task_type", "CAUSAL_LM"},
      {"use_dora", false},
      {"use_rslora", c.use_rslora}};
  // A whole alpha is written as an integer, as PEFT does; beyond 2^53 a
  // double is not an exact integer any more (and the cast could overflow).
  if (c.lora_alpha == std::floor(c.lora_alpha) && std::fabs(c.lora_alpha) < 0x1p53)
    j["lora_alpha"] = static_cast<int64_t>(c.lora_alpha);
  return j.dump(2) + "\n";
}

}  // namespace vitrine::models
