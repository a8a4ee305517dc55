#include "models/llama_config.h"

#include <ATen/ATen.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace vitrine::models {
namespace {

using nlohmann::json;

// Per-architecture facts and transformers 4.46 defaults.
struct ArchitectureSpec {
  const char* architecture;
  const char* model_type;
  int64_t default_max_position_embeddings;
  std::optional<int64_t> default_bos;
  std::optional<int64_t> default_eos;
  bool reads_head_dim;  // config.head_dim is honoured (Llama, Mistral); Qwen2 uses hidden / heads
  bool has_attention_bias;  // attention_bias / mlp_bias keys exist (Llama)
  bool qkv_bias_always;     // Qwen2: q/k/v projections always have biases
  bool supports_rope_scaling;
  std::optional<int64_t> default_sliding_window;  // Mistral: 4096 when the key is absent
};

const ArchitectureSpec kArchitectures[] = {
    {"LlamaForCausalLM", "llama", 2048, 1, 2, true, true, false, true, std::nullopt},
    {"MistralForCausalLM", "mistral", 4096 * 32, 1, 2, true, false, false, false, 4096},
    {"Qwen2ForCausalLM", "qwen2", 32768, std::nullopt, std::nullopt, false, false, true, true,
     4096},
};

[[noreturn]] void refuse(const std::string& source, const std::string& key,
                         const std::string& what) {
  throw std::runtime_error(source + ": \"" + key + "\" " + what);
}

bool present(const json& j, const char* key) {
  return j.contains(key) && !j.at(key).is_null();
}

int64_t read_int(const json& j, const char* key, const std::string& source) {
  const json& v = j.at(key);
  if (!v.is_number_integer()) refuse(source, key, "must be an integer, got " + v.dump());
  return v.get<int64_t>();
}

int64_t required_int(const json& j, const char* key, const std::string& source) {
  if (!present(j, key)) refuse(source, key, "is missing: required for a Llama-family config.json");
  const int64_t value = read_int(j, key, source);
  if (value <= 0) refuse(source, key, "must be positive, got " + std::to_string(value));
  return value;
}

int64_t optional_int(const json& j, const char* key, int64_t fallback, const std::string& source) {
  return present(j, key) ? read_int(j, key, source) : fallback;
}

double optional_double(const json& j, const char* key, double fallback, const std::string& source) {
  if (!present(j, key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_number()) refuse(source, key, "must be a number, got " + v.dump());
  return v.get<double>();
}

bool optional_bool(const json& j, const char* key, bool fallback, const std::string& source) {
  if (!present(j, key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_boolean()) refuse(source, key, "must be true or false, got " + v.dump());
  return v.get<bool>();
}

const ArchitectureSpec& resolve_architecture(const json& j, const std::string& source) {
  std::string wanted;
  if (present(j, "architectures")) {
    const json& list = j.at("architectures");
    if (!list.is_array() || list.size() != 1 || !list[0].is_string()) {
      refuse(source, "architectures", "must be a list of one name, got " + list.dump());
    }
    wanted = list[0].get<std::string>();
    for (const auto& spec : kArchitectures) {
      if (wanted == spec.architecture) {
        if (present(j, "model_type") && j.at("model_type") != spec.model_type) {
          refuse(source, "model_type",
                 "is " + j.at("model_type").dump() + " but architectures names " + wanted +
                     " (expected \"" + spec.model_type + "\")");
        }
        return spec;
      }
    }
    refuse(
        source, "architectures",
        "names " + wanted +
            ", not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
  }
  if (present(j, "model_type") && j.at("model_type").is_string()) {
    wanted = j.at("model_type").get<std::string>();
    for (const auto& spec : kArchitectures) {
      if (wanted == spec.model_type) return spec;
    }
  }
  refuse(source, "architectures",
         "is missing and model_type " +
             (wanted.empty() ? std::string("is absent") : "\"" + wanted + "\"") +
             " is not llama, mistral or qwen2: not a Llama-family checkpoint?");
}

RopeScaling parse_rope_scaling(const json& j, const ArchitectureSpec& spec,
                               const std::string& source) {
  RopeScaling scaling;
  if (!present(j, "rope_scaling")) return scaling;
  const json& rs = j.at("rope_scaling");
  if (!rs.is_object())
    refuse(source, "rope_scaling", "must be an object or null, got " + rs.dump());
  // transformers copies the legacy "type" over "rope_type".
  std::string type;
  if (present(rs, "type")) {
    type = rs.at("type").is_string() ? rs.at("type").get<std::string>() : rs.at("type").dump();
  } else if (present(rs, "rope_type")) {
    type = rs.at("rope_type").is_string() ? rs.at("rope_type").get<std::string>()
                                          : rs.at("rope_type").dump();
  } else {
    refuse(source, "rope_scaling", "has neither \"rope_type\" nor \"type\"");
  }
  if (type == "default") return scaling;
  if (!spec.supports_rope_scaling) {
    refuse(source, "rope_scaling", std::string("is not supported for ") + spec.architecture);
  }
  if (type == "linear") {
    scaling.type = RopeScalingType::kLinear;
  } else if (type == "dynamic") {
    scaling.type = RopeScalingType::kDynamic;
  } else if (type == "llama3") {
    scaling.type = RopeScalingType::kLlama3;
  } else {
    refuse(source, "rope_scaling",
           "type \"" + type + "\" is not supported (supported: default, linear, dynamic, llama3)");
  }
  const std::string key_prefix = "rope_scaling.";
  auto need_number = [&](const char* key) {
    if (!present(rs, key))
      refuse(source, key_prefix + key, "is missing: required for " + type + " scaling");
    if (!rs.at(key).is_number())
      refuse(source, key_prefix + key, "must be a number, got " + rs.at(key).dump());
    return rs.at(key).get<double>();
  };
  scaling.factor = need_number("factor");
  if (!(scaling.factor > 0)) refuse(source, key_prefix + "factor", "must be positive");
  if (scaling.type == RopeScalingType::kLlama3) {
    scaling.low_freq_factor = need_number("low_freq_factor");
    scaling.high_freq_factor = need_number("high_freq_factor");
    if (!present(rs, "original_max_position_embeddings")) {
      refuse(source, key_prefix + "original_max_position_embeddings",
             "is missing: required for llama3 scaling");
    }
    scaling.original_max_position_embeddings =
        read_int(rs, "original_max_position_embeddings", source);
    if (scaling.original_max_position_embeddings <= 0) {
      refuse(source, key_prefix + "original_max_position_embeddings", "must be positive");
    }
    if (!(scaling.low_freq_factor > 0) || !(scaling.high_freq_factor > scaling.low_freq_factor)) {
      refuse(source, key_prefix + "high_freq_factor",
             "must exceed low_freq_factor, and both be positive");
    }
  } else if (present(rs, "original_max_position_embeddings")) {
    // Recorded only: transformers 4.46 scales linear/dynamic RoPE from max_position_embeddings.
    scaling.original_max_position_embeddings =
        read_int(rs, "original_max_position_embeddings", source);
  }
  return scaling;
}

// The attention window in effect, as transformers 4.46's eager attention
// applies it: Mistral's sliding_window (absent: 4096; null: none) always;
// Qwen2's only with use_sliding_window, and then refused when it would mask
// within the context: transformers applies it to the layers from
// max_window_layers on under flash attention but to every layer under eager
// and sdpa, so there is no one reference to match. Llama has no window (the
// key is ignored, as transformers ignores it).
std::optional<int64_t> parse_sliding_window(const json& j, const ArchitectureSpec& spec,
                                            int64_t max_position_embeddings,
                                            const std::string& source) {
  if (std::string(spec.model_type) == "llama") return std::nullopt;
  const std::optional<int64_t> window =
      !j.contains("sliding_window")  ? spec.default_sliding_window
      : present(j, "sliding_window") ? std::optional<int64_t>(read_int(j, "sliding_window", source))
                                     : std::nullopt;
  if (window && *window <= 0) refuse(source, "sliding_window", "must be positive or null");
  if (std::string(spec.model_type) != "qwen2") return window;
  if (!optional_bool(j, "use_sliding_window", false, source)) return std::nullopt;
  if (window && *window < max_position_embeddings) {
    refuse(source, "sliding_window",
           "is " + std::to_string(*window) + ", shorter than max_position_embeddings " +
               std::to_string(max_position_embeddings) +
               " with use_sliding_window: Qwen2's per-layer windows (max_window_layers) are not "
               "supported (set use_sliding_window to false to attend to the whole context)");
  }
  return window;
}

// inv_freq = 1 / base^(arange(0, dim, 2) / dim), op for op as transformers
// writes it; `base` is a 0-dim float32 tensor.  // [dim / 2]
at::Tensor default_inv_freq(const at::Tensor& base, int64_t dim) {
  const at::Tensor exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / dim;  // [dim / 2]
  return at::reciprocal(at::pow(base, exponents)) * 1.0;
}

}  // namespace

const char* rope_scaling_type_name(RopeScalingType type) {
  switch (type) {
    case RopeScalingType::kNone:
      return "none";
    case RopeScalingType::kLinear:
      return "linear";
    case RopeScalingType::kDynamic:
      return "dynamic";
    case RopeScalingType::kLlama3:
      return "llama3";
  }
  return "?";
}

LlamaConfig parse_llama_config(const std::string& json_text, const std::string& source) {
  const json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    throw std::runtime_error(source + ": not valid JSON: truncated or not a config.json?");
  if (!j.is_object()) throw std::runtime_error(source + ": not a JSON object: not a config.json?");

  const ArchitectureSpec& spec = resolve_architecture(j, source);
  LlamaConfig c;
  c.source = source;
  c.architecture = spec.architecture;
  c.model_type = spec.model_type;
  c.vocab_size = required_int(j, "vocab_size", source);
  c.hidden_size = required_int(j, "hidden_size", source);
  c.intermediate_size = required_int(j, "intermediate_size", source);
  c.num_hidden_layers = required_int(j, "num_hidden_layers", source);
  c.num_attention_heads = required_int(j, "num_attention_heads", source);
  c.num_key_value_heads = optional_int(j, "num_key_value_heads", c.num_attention_heads, source);
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0) {
    throw std::invalid_argument(source + ": \"num_key_value_heads\" " +
                                std::to_string(c.num_key_value_heads) +
                                " must be positive and divide num_attention_heads " +
                                std::to_string(c.num_attention_heads));
  }
  if (spec.reads_head_dim && present(j, "head_dim")) {
    c.head_dim = read_int(j, "head_dim", source);
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      throw std::invalid_argument(source + ": \"hidden_size\" " + std::to_string(c.hidden_size) +
                                  " is not a multiple of num_attention_heads " +
                                  std::to_string(c.num_attention_heads) +
                                  " and no head_dim is given");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
    if (present(j, "head_dim") && read_int(j, "head_dim", source) != c.head_dim) {
      refuse(source, "head_dim",
             std::string("differs from hidden_size / num_attention_heads, which ") +
                 spec.architecture + " uses");
    }
  }
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) {
    refuse(source, "head_dim",
           "must be positive and even (RoPE rotates pairs), got " + std::to_string(c.head_dim));
  }

  c.rms_norm_eps = optional_double(j, "rms_norm_eps", 1e-6, source);
  if (!(c.rms_norm_eps > 0)) refuse(source, "rms_norm_eps", "must be positive");
  c.rope_theta = optional_double(j, "rope_theta", 10000.0, source);
  if (!(c.rope_theta > 0)) refuse(source, "rope_theta", "must be positive");
  c.max_position_embeddings =
      optional_int(j, "max_position_embeddings", spec.default_max_position_embeddings, source);
  if (c.max_position_embeddings <= 0) refuse(source, "max_position_embeddings", "must be positive");
  c.rope_scaling = parse_rope_scaling(j, spec, source);
  if (present(j, "partial_rotary_factor") &&
      optional_double(j, "partial_rotary_factor", 1.0, source) != 1.0) {
    refuse(source, "partial_rotary_factor", "other than 1 is not supported");
  }
  if (present(j, "quantization_config")) {
    refuse(source, "quantization_config",
           "is present: quantized checkpoints are not supported, use a float one");
  }
  c.tie_word_embeddings = optional_bool(j, "tie_word_embeddings", false, source);

  if (spec.has_attention_bias) {
    const bool attention_bias = optional_bool(j, "attention_bias", false, source);
    c.qkv_bias = attention_bias;
    c.o_bias = attention_bias;
    c.mlp_bias = optional_bool(j, "mlp_bias", false, source);
  } else {
    c.qkv_bias = spec.qkv_bias_always;
  }

  if (present(j, "hidden_act")) {
    const json& act = j.at("hidden_act");
    const std::string name = act.is_string() ? act.get<std::string>() : act.dump();
    if (name != "silu" && name != "swish") {
      refuse(source, "hidden_act", "is \"" + name + "\"; only silu (SwiGLU) is supported");
    }
  }
  c.hidden_act = "silu";

  c.bos_token_id = present(j, "bos_token_id")
                       ? std::optional<int64_t>(read_int(j, "bos_token_id", source))
                       : (j.contains("bos_token_id") ? std::nullopt : spec.default_bos);
  if (present(j, "eos_token_id")) {
    const json& eos = j.at("eos_token_id");
    if (eos.is_number_integer()) {
      c.eos_token_ids.push_back(eos.get<int64_t>());
    } else if (eos.is_array()) {
      for (const json& id : eos) {
        if (!id.is_number_integer())
          refuse(source, "eos_token_id", "must be an integer or a list of integers");
        c.eos_token_ids.push_back(id.get<int64_t>());
      }
    } else {
      refuse(source, "eos_token_id", "must be an integer or a list of integers, got " + eos.dump());
    }
  } else if (!j.contains("eos_token_id") && spec.default_eos) {
    c.eos_token_ids.push_back(*spec.default_eos);
  }

  c.sliding_window = parse_sliding_window(j, spec, c.max_position_embeddings, source);
  return c;
}

LlamaConfig load_llama_config(const std::filesystem::path& path) {
  const std::filesystem::path file =
      std::filesystem::is_directory(path) ? path / "config.json" : path;
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw std::runtime_error(file.string() + ": cannot open config.json: not a model directory?");
  std::stringstream text;
  text << in.rdbuf();
  return parse_llama_config(text.str(), file.string());
}

at::Tensor rope_inv_freq(const LlamaConfig& config) {
  return rope_inv_freq(config, config.max_position_embeddings);
}

at::Tensor rope_inv_freq(const LlamaConfig& config, int64_t seq_len) {
  const int64_t dim = config.head_dim;
  const RopeScaling& rs = config.rope_scaling;
  if (rs.type == RopeScalingType::kDynamic && seq_len > config.max_position_embeddings) {
    // _dynamic_frequency_update: seq_len is a tensor there, so the new base is
    // computed in float32: base * ((factor * seq_len / max) - (factor - 1)) ** (dim / (dim - 2)).
    const at::Tensor len = at::scalar_tensor(seq_len, at::kLong);
    const at::Tensor stretch = len * rs.factor / config.max_position_embeddings - (rs.factor - 1);
    const at::Tensor base =
        at::pow(stretch, static_cast<double>(dim) / static_cast<double>(dim - 2)) *
        config.rope_theta;
    return default_inv_freq(base, dim);
  }
  at::Tensor inv_freq =
      default_inv_freq(at::scalar_tensor(config.rope_theta, at::kFloat), dim);  // [dim / 2]
  if (rs.type == RopeScalingType::kLinear) {
    inv_freq = inv_freq / rs.factor;
  } else if (rs.type == RopeScalingType::kLlama3) {
    const double old_context = static_cast<double>(rs.original_max_position_embeddings);
    const double low_freq_wavelen = old_context / rs.low_freq_factor;
    const double high_freq_wavelen = old_context / rs.high_freq_factor;
    const at::Tensor wavelen = at::reciprocal(inv_freq) * (2 * M_PI);  // [dim / 2]
    at::Tensor llama = at::where(wavelen > low_freq_wavelen, inv_freq / rs.factor, inv_freq);
    const at::Tensor smooth =
        (at::reciprocal(wavelen) * rs.original_max_position_embeddings - rs.low_freq_factor) /
        (rs.high_freq_factor - rs.low_freq_factor);
    const at::Tensor smoothed = at::rsub(smooth, 1) * llama / rs.factor + smooth * llama;
    const at::Tensor is_medium =
        at::logical_not(wavelen < high_freq_wavelen) * at::logical_not(wavelen > low_freq_wavelen);
    inv_freq = at::where(is_medium, smoothed, llama);
  }
  return inv_freq;
}

}  // namespace vitrine::models
