#include "training/memory_estimate.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <stdexcept>
#include <string>

namespace vitrine::training {
namespace {

// [in, out] of a projection by module name.
std::pair<int64_t, int64_t> projection_shape(const models::LlamaConfig& c,
                                             const std::string& module) {
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim,
                kv = c.num_key_value_heads * c.head_dim, i = c.intermediate_size;
  if (module == "q_proj") return {h, q};
  if (module == "k_proj" || module == "v_proj") return {h, kv};
  if (module == "o_proj") return {q, h};
  if (module == "gate_proj" || module == "up_proj") return {h, i};
  if (module == "down_proj") return {i, h};
  return {0, 0};
}

// Floats the graph of one decoder layer keeps per token.
int64_t layer_floats_per_token(const models::LlamaConfig& c, const TrainingShape& s) {
  const int64_t h = c.hidden_size, d = c.head_dim, heads = c.num_attention_heads,
                kv = c.num_key_value_heads, i = c.intermediate_size;
  int64_t floats = 0;
  floats += 2 * 3 * h;                 // two RMS norms: input, normalised, scaled
  floats += 2 * h;                     // the two residual sums
  floats += 3 * (heads + 2 * kv) * d;  // q, k, v and their RoPE products
  floats += (heads + 2 * kv) * d;      // q, k, v kept by the attention core (no score matrix)
  floats += 2 * heads * d;             // attention output and o_proj's input
  floats += 2 * i;                     // gate and up, kept by SwiGLU
  for (const std::string& module : s.target_modules) {
    const auto [in, out] = projection_shape(c, module);
    // A's output; with dropout, the dropped-out input and its mask (a byte
    // per element: models/training_ops.h's dropout).
    floats += s.rank + (s.dropout ? in + in / 4 : 0);
    (void)out;
  }
  return floats;
}

// The value of "key:   123 kB" in /proc/meminfo, in bytes; 0 when absent.
int64_t meminfo_bytes(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string name;
  int64_t value = 0;
  std::string unit;
  while (in >> name >> value >> unit) {
    if (name == key + ":") return value * 1024;
  }
  return 0;
}

// A number from a cgroup v2 file; 0 when absent or "max".
int64_t cgroup_value(const char* file) {
  std::ifstream in(std::string("/sys/fs/cgroup/") + file);
  std::string text;
  if (!(in >> text) || text == "max") return 0;
  try {
    return std::stoll(text);
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

MemoryEstimate estimate_training_memory(const models::LlamaConfig& c, models::BaseDtype base_dtype,
                                        const TrainingShape& s, bool checkpointing) {
  MemoryEstimate e;
  e.checkpointing = checkpointing;
  const int64_t h = c.hidden_size, layers = c.num_hidden_layers, v = c.vocab_size;
  int64_t projection_params = 0, lora_params = 0;
  for (const char* module :
       {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}) {
    const auto [in, out] = projection_shape(c, module);
    projection_params += in * out;
  }
  for (const std::string& module : s.target_modules) {
    const auto [in, out] = projection_shape(c, module);
    lora_params += s.rank * (in + out);
  }
  const int64_t table_params = v * h * (c.tie_word_embeddings ? 1 : 2);
  const int64_t weight_bytes = base_dtype == models::BaseDtype::kBf16 ? 2 : 4;
  e.weights = (layers * projection_params + table_params) * weight_bytes +
              (layers * 2 + 1) * h * 4;      // norms stay float32
  e.adapter = layers * lora_params * 4 * 4;  // weights, gradients, two moments
  const int64_t tokens = s.batch_size * s.seq_len;
  const int64_t layer = layer_floats_per_token(c, s) * tokens * 4;
  e.activations = checkpointing ? layers * h * tokens * 4 + 2 * layer : layers * layer;
  // A layer's attention backward holds, for a moment, each query head's
  // share of dK and dV (models/kernels/training_attention.h); the scores
  // of a block of 64 query rows per kernel thread are a few MB.
  e.activations += 2 * s.batch_size * c.num_attention_heads * s.seq_len * c.head_dim * 4;
  e.logits = 3 * tokens * v * 4;
  e.runtime = kRuntimeBytes;
  return e;
}

Checkpointing parse_checkpointing(const std::string& name) {
  if (name == "auto") return Checkpointing::kAuto;
  if (name == "always") return Checkpointing::kAlways;
  if (name == "never") return Checkpointing::kNever;
  throw std::invalid_argument(
      fmt::format("activation_checkpointing '{}': expected auto, always or never", name));
}

MemoryEstimate plan_training_memory(const models::LlamaConfig& config, models::BaseDtype base_dtype,
                                    const TrainingShape& shape, Checkpointing mode, int64_t limit,
                                    const std::string& what) {
  const MemoryEstimate kept = estimate_training_memory(config, base_dtype, shape, false);
  const MemoryEstimate recomputed = estimate_training_memory(config, base_dtype, shape, true);
  const bool fits_kept = limit <= 0 || kept.total() <= limit;
  MemoryEstimate plan = recomputed;
  if (mode == Checkpointing::kNever || (mode == Checkpointing::kAuto && fits_kept)) plan = kept;
  if (limit <= 0 || plan.total() <= limit) return plan;
  std::vector<std::string> changes;
  if (!plan.checkpointing && recomputed.total() <= limit) {
    changes.push_back(fmt::format("set activation_checkpointing: always or auto (about {})",
                                  format_bytes(recomputed.total())));
  }
  if (shape.batch_size > 1) {
    changes.push_back(
        fmt::format("lower batch_size ({}) and raise gradient_accumulation", shape.batch_size));
  }
  changes.push_back(fmt::format("lower max_seq_len ({})", shape.seq_len));
  if (base_dtype == models::BaseDtype::kF32) {
    changes.push_back("hold the base in bf16 (base_dtype: bf16)");
  }
  std::string advice;
  for (size_t i = 0; i < changes.size(); ++i) {
    advice += (i == 0 ? "" : i + 1 == changes.size() ? " or " : ", ") + changes[i];
  }
  throw std::runtime_error(
      fmt::format("{} would need about {} ({}), more than the {} this machine has free: {}", what,
                  format_bytes(plan.total()), describe(plan), format_bytes(limit), advice));
}

int64_t available_memory(int64_t already_held) {
  int64_t free = meminfo_bytes("MemAvailable");
  if (const int64_t limit = cgroup_value("memory.max"); limit > 0) {
    const int64_t room = std::max<int64_t>(0, limit - cgroup_value("memory.current"));
    free = free > 0 ? std::min(free, room) : room;
  }
  return free > 0 ? free + already_held : 0;
}

std::string format_bytes(int64_t bytes) {
  const double mib = static_cast<double>(bytes) / (1 << 20);
  return mib >= 1024 ? fmt::format("{:.1f} GiB", mib / 1024) : fmt::format("{:.0f} MiB", mib);
}

std::string describe(const MemoryEstimate& e) {
  return fmt::format("weights {} + adapter {} + activations {} ({}) + logits {} + runtime {} = {}",
                     format_bytes(e.weights), format_bytes(e.adapter), format_bytes(e.activations),
                     e.checkpointing ? "checkpointed" : "all layers kept", format_bytes(e.logits),
                     format_bytes(e.runtime), format_bytes(e.total()));
}

}  // namespace vitrine::training
