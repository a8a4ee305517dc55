// How much memory a LoRA training run will take, before it takes it: the
// frozen base, the adapter with its gradient and AdamW moments, the
// activations autograd keeps for the backward pass, and the logits. The
// run prints the estimate and refuses one that will not fit, naming what
// to change; `activation_checkpointing: auto` turns recomputation on when
// only that makes it fit.
//
// The activation figure is floats per token and layer, term by term the
// tensors a layer's graph holds (the norms, q/k/v, what the attention core
// and SwiGLU keep, each LoRA target's dropped-out input, the layer's
// temporaries), plus the probabilities one layer's backward recomputes;
// with checkpointing, each layer's input plus one layer's graph while it
// is recomputed. Checked against measured peaks (bench/train_bench prints
// both): 4.99 against 4.94 GB on the 1.1B shape at 512 tokens. bench/train_bench prints it beside
// the measured peak (docs/benchmarks.md). An estimate, not a bound: the
// allocator's slack and libtorch's own buffers come on top (kRuntimeBytes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/llama.h"
#include "models/llama_config.h"

namespace vitrine::training {

struct MemoryEstimate {
  int64_t weights = 0;      // the frozen base as held (bf16 or float32)
  int64_t adapter = 0;      // LoRA factors, their gradients, AdamW's two moments
  int64_t activations = 0;  // what the graph keeps between forward and backward
  int64_t logits = 0;       // logits, their log-softmax and gradient
  int64_t runtime = 0;      // libtorch, tokenizer, batches: a fixed allowance
  bool checkpointing = false;

  int64_t total() const { return weights + adapter + activations + logits + runtime; }
};

struct TrainingShape {
  int64_t batch_size = 1;  // rows per micro-batch
  int64_t seq_len = 256;   // tokens per row
  int64_t rank = 8;
  std::vector<std::string> target_modules;  // q_proj, v_proj ...
  bool dropout = true;                      // LoRA dropout keeps a copy of each target's input
};

// What a process holds besides the weights before training starts
// (libtorch, the tokenizer, kernel buffers): measured 690 MB beside the
// 1.1B shape's 2.2 GB at 8 tokens; 600 MB counted.
inline constexpr int64_t kRuntimeBytes = int64_t{600} << 20;

MemoryEstimate estimate_training_memory(const models::LlamaConfig& config,
                                        models::BaseDtype base_dtype, const TrainingShape& shape,
                                        bool checkpointing);

// activation_checkpointing in configs/train.yaml.
enum class Checkpointing { kAuto, kAlways, kNever };
// "auto", "always", "never"; throws std::invalid_argument naming the value.
Checkpointing parse_checkpointing(const std::string& name);

// The memory plan of one adapter's training: checkpointing as asked, or
// for kAuto off when that fits under `limit` bytes and on otherwise.
// Throws std::runtime_error when the plan does not fit (limit 0 = none),
// naming `what` (e.g. "adapter 'qa'"), the estimate, the limit and what
// to change: checkpointing, batch_size, max_seq_len, base_dtype.
MemoryEstimate plan_training_memory(const models::LlamaConfig& config, models::BaseDtype base_dtype,
                                    const TrainingShape& shape, Checkpointing mode, int64_t limit,
                                    const std::string& what);

// Bytes this process may still use: MemAvailable of /proc/meminfo, capped
// by the cgroup's memory.max less what the cgroup uses (a pod's limit),
// plus `already_held` (what the process holds now and the estimate counts,
// e.g. the loaded base). 0 when neither can be read.
int64_t available_memory(int64_t already_held = 0);

// "1.9 GiB" / "640 MiB".
std::string format_bytes(int64_t bytes);
// "weights 2.1 GiB + adapter 12 MiB + activations 1.4 GiB + logits 188 MiB + runtime 400 MiB = 4.1
// GiB"
std::string describe(const MemoryEstimate& estimate);

}  // namespace vitrine::training
