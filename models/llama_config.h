// The shape of a Llama-family checkpoint, parsed from a Hugging Face
// config.json, and the RoPE inverse frequencies it implies.
//
// Accepted architectures: LlamaForCausalLM, MistralForCausalLM and
// Qwen2ForCausalLM (the same decoder; Qwen2 adds q/k/v biases). Everything
// the runtime cannot reproduce exactly is refused with an error naming the
// key and the file, never silently ignored: another hidden_act than silu,
// Qwen2's per-layer sliding windows, RoPE scaling other than linear /
// dynamic / llama3, partial rotary embeddings, quantized checkpoints.
// Mistral's sliding window is honoured (sliding_window below). Defaults for
// absent optional keys follow transformers 4.46 for each architecture.
//
// rope_inv_freq() reproduces transformers 4.46's float32 computation op for op
// (_compute_default_rope_parameters, _compute_linear_scaling_rope_parameters,
// _compute_dynamic_ntk_parameters, _compute_llama3_parameters).
//
// Not goals: generation_config.json (sampling defaults), tokenizer settings,
// YaRN / LongRoPE scaling, per-layer sliding windows (Qwen2's max_window_layers).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace vitrine::models {

enum class RopeScalingType {
  kNone,     // plain theta^(-2i/d)
  kLinear,   // inv_freq / factor (position interpolation)
  kDynamic,  // NTK-aware: theta grows with the sequence length past max_position_embeddings
  kLlama3,   // Llama 3.1: low frequencies / factor, high kept, a smooth blend between
};

const char* rope_scaling_type_name(RopeScalingType type);

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;  // none: no rope_scaling in config.json
  double factor = 1.0;                            // linear / dynamic / llama3 stretch factor
  double low_freq_factor = 1.0;   // llama3: wavelengths > original/low are divided by factor
  double high_freq_factor = 4.0;  // llama3: wavelengths < original/high are kept
  int64_t original_max_position_embeddings =
      0;  // llama3: the context the base model was trained on
};

struct LlamaConfig {
  std::string architecture = "LlamaForCausalLM";  // also "MistralForCausalLM", "Qwen2ForCausalLM"
  std::string model_type = "llama";               // "llama", "mistral", "qwen2"
  int64_t vocab_size = 0;                         // rows of embed_tokens / lm_head; required
  int64_t hidden_size = 0;                        // model width; required
  int64_t intermediate_size = 0;                  // SwiGLU inner width; required
  int64_t num_hidden_layers = 0;                  // decoder layers; required
  int64_t num_attention_heads = 0;                // query heads; required
  int64_t num_key_value_heads = 0;  // key/value heads (GQA/MQA); default = num_attention_heads
  int64_t head_dim = 0;             // per-head width; default hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;       // RMSNorm epsilon
  double rope_theta = 10000.0;      // RoPE base
  RopeScaling rope_scaling;         // default: none
  int64_t max_position_embeddings = 2048;  // context length (per-architecture default)
  bool tie_word_embeddings = false;        // lm_head shares embed_tokens' weight
  bool qkv_bias = false;  // q/k/v projections have biases (Llama attention_bias; always for Qwen2)
  bool o_bias = false;    // o_proj has a bias (Llama attention_bias only)
  bool mlp_bias = false;  // gate/up/down projections have biases (Llama mlp_bias)
  std::string hidden_act = "silu";      // only silu is supported
  std::optional<int64_t> bos_token_id;  // absent or null: none
  std::vector<int64_t> eos_token_ids;   // eos_token_id, int or list; empty when absent
  // Attention window in effect: each position attends to the last
  // `sliding_window` positions, itself included (Mistral; Qwen2 only when it
  // masks nothing within max_position_embeddings). Unset: the whole context.
  std::optional<int64_t> sliding_window;
  std::string source;  // the file parsed, for error messages

  int64_t n_kv_groups() const { return num_attention_heads / num_key_value_heads; }
};

// Parses config.json text; `source` names the file in errors. Throws
// std::runtime_error for malformed JSON and unsupported settings,
// std::invalid_argument for inconsistent values (e.g. heads % kv_heads != 0).
LlamaConfig parse_llama_config(const std::string& json_text,
                               const std::string& source = "config.json");
// Reads `path` (a config.json, or a model directory containing one).
LlamaConfig load_llama_config(const std::filesystem::path& path);

// The RoPE inverse frequencies, float32 [head_dim / 2], for sequences up to
// max_position_embeddings (for dynamic scaling: the init-time frequencies).
at::Tensor rope_inv_freq(const LlamaConfig& config);
// For dynamic scaling the frequencies depend on the sequence length: pass
// transformers' max_seq_len_cached, the longest length (max position + 1)
// seen since lengths last fell below max_position_embeddings; at or below
// max_position_embeddings the init-time frequencies are returned. For every
// other type `seq_len` is ignored.
at::Tensor rope_inv_freq(const LlamaConfig& config, int64_t seq_len);

}  // namespace vitrine::models
