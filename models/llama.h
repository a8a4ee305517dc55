// The Llama decoder in the libtorch C++ frontend, for Hugging Face
// checkpoints of LlamaForCausalLM and the architectures that share its shape
// (Mistral, Qwen2 with q/k/v biases).
//
// Submodules are registered under the Hugging Face names, so the module's
// named_parameters() are the checkpoint's tensor names
// (model.layers.0.self_attn.q_proj.weight ...). Every projection is a
// LoraLinear: adapters are applied per row, never merged while serving. The
// weights are immutable after loading; per-request state lives in KvCache.
// Computation is float32 on the configured device; checkpoints load from
// one model.safetensors or from shards (CheckpointWeights), F32, F16 or BF16.
// Mistral's sliding window is applied through the attention mask (the KV
// cache still keeps every position). Not goals: flash attention, a rolling
// KV cache.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "models/kernels/packed_linear_bf16.h"
#include "models/kernels/packed_linear_int8.h"
#include "models/llama_config.h"
#include "models/lora.h"

namespace vitrine::models {

// Keys and values of the positions seen so far, per layer, in buffers that
// hold `capacity` positions so a decode step writes in place instead of
// copying the whole cache. Reserve the positions a generation will need
// (prompt + new tokens) before the first forward; past that the buffers
// double.
struct KvCache {
  std::vector<at::Tensor> k;  // per layer [batch, n_kv_heads, capacity, head_dim]
  std::vector<at::Tensor> v;  // per layer [batch, n_kv_heads, capacity, head_dim]
  int64_t length = 0;         // positions already in the cache
  int64_t reserved = 0;       // positions to allocate at the first forward

  void reserve(int64_t positions) { reserved = positions; }
  int64_t capacity() const { return k.empty() || !k[0].defined() ? 0 : k[0].size(2); }
};

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x);  // [..., dim] -> [..., dim]
  at::Tensor weight;                        // [dim]
 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  explicit LlamaAttentionImpl(const LlamaConfig& config);
  // x [batch, seq, hidden], cos/sin [batch, seq, head_dim]; appends this
  // call's keys and values to layer `layer` of the cache when given.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     KvCache* cache, size_t layer, const at::Tensor& mask, const RowAdapters& rows);
  LoraLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t n_heads_, n_kv_heads_, head_dim_;
};
TORCH_MODULE(LlamaAttention);

class LlamaMlpImpl : public torch::nn::Module {
 public:
  explicit LlamaMlpImpl(const LlamaConfig& config);
  at::Tensor forward(const at::Tensor& x,
                     const RowAdapters& rows);  // SwiGLU: down(silu(gate(x)) * up(x))
  LoraLinear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMlp);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit LlamaDecoderLayerImpl(const LlamaConfig& config);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     KvCache* cache, size_t layer, const at::Tensor& mask, const RowAdapters& rows);
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  LlamaAttention self_attn{nullptr};
  LlamaMlp mlp{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

// The decoder stack: "model." in checkpoint names.
class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const LlamaConfig& config);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

// Hidden states of a forward, in Hugging Face's output_hidden_states order.
struct HiddenStates {
  std::vector<at::Tensor> states;  // [0] embeddings, [i] output of layer i-1, [n_layers] final
                                   // norm; each [batch, seq, hidden]
  at::Tensor last_layer_prenorm;   // raw output of the last layer [batch, seq, hidden]
};

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  explicit LlamaForCausalLMImpl(LlamaConfig config);

  // ids [batch, seq] (int64) -> logits [batch, seq, vocab]. With a cache,
  // positions continue after cache->length and the cache grows by seq.
  // left_pad[b] (empty = none) is the number of padding tokens at the start
  // of row b (in the cache and this call): they are never attended to and
  // row b's positions count from its first real token, so a padded row
  // computes what it would alone.
  at::Tensor forward(const at::Tensor& ids, KvCache* cache = nullptr, const RowAdapters& rows = {},
                     HiddenStates* hidden = nullptr, const std::vector<int64_t>& left_pad = {});
  // The same, but only the last position's logits [batch, vocab]: what
  // generation needs, without the head's cost on every prompt position.
  at::Tensor forward_last(const at::Tensor& ids, KvCache* cache = nullptr,
                          const RowAdapters& rows = {}, const std::vector<int64_t>& left_pad = {});

  // Several examples packed in each row, for training: segments [batch,
  // seq] gives each token's example (any ids; padding can be one more
  // segment). Positions restart at each example and no token attends to
  // another example, so each computes what it would alone. -> [b, s, vocab]
  at::Tensor forward_packed(const at::Tensor& ids, const at::Tensor& segments,
                            const RowAdapters& rows = {});

  const LlamaConfig& config() const { return config_; }
  // Every LoRA-capable projection, by checkpoint module path
  // ("model.layers.0.self_attn.q_proj").
  std::vector<std::pair<std::string, LoraLinear>> projections();
  // [vocab, hidden]: embed_tokens' when tied; empty when packed (the
  // panels hold it, and with tied embeddings the embedding table too).
  at::Tensor lm_head_weight() const;

  // Whether the projections and the head run on packed panels for
  // inference (WeightLayout::kPacked in float32, or an int8 base): no
  // autograd, no merging or saving.
  bool packed() const { return packed_head_.defined() || int8_head_.defined(); }
  // Installs the head's panels; load_llama's, when it packs.
  void use_packed_head(PackedWeight head) { packed_head_ = std::move(head); }
  // Whether the frozen base is held in bfloat16 (BaseDtype::kBf16): the
  // projections and the head as packed bf16 pairs, trainable through
  // (frozen_bf16_linear), the embedding table in bf16 too.
  bool base_bf16() const { return bf16_head_.defined(); }
  void use_bf16_head(PackedWeightBf16 head, Bf16Path path) {
    bf16_head_ = std::move(head);
    bf16_path_ = path;
  }
  // Whether the frozen base is held as int8 (BaseDtype::kInt8): the
  // projections and the head as int8 panels with a scale per output, the
  // embedding table in bf16 (or read from the head's panels when tied).
  bool base_int8() const { return int8_head_.defined(); }
  void use_int8_head(PackedWeightInt8 head) { int8_head_ = std::move(head); }
  // Which kernels a bf16 base's products run on (the projections' and the
  // head's, forward and backward): kExact keeps float32 activations and
  // gradients; kFast rounds them to bf16 for vdpbf16ps (bf16_compute in
  // configs/train.yaml). load_llama picks kExact for training, kFast for
  // serving. No effect on a float32 base.
  void set_bf16_path(Bf16Path path);
  // The head's weight [vocab, hidden] as float32, whatever its layout (a
  // copy when packed): for saving and checks.
  at::Tensor head_weight_float() const;

  // Activation checkpointing for training: each decoder layer keeps only
  // its input for the backward pass and runs its forward again there, so
  // activation memory is one layer's, not every layer's, for about a third
  // more compute. Off by default; only forwards that build a graph use it.
  void set_activation_checkpointing(bool on) { checkpoint_layers_ = on; }
  bool activation_checkpointing() const { return checkpoint_layers_; }

  LlamaModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // "lm_head.weight" [vocab, hidden]; absent when tied

 private:
  // The decoder stack up to and including the final norm for left-padded
  // rows continuing a cache: [batch, seq, hidden].
  at::Tensor decode(const at::Tensor& ids, KvCache* cache, const RowAdapters& rows,
                    HiddenStates* hidden, const std::vector<int64_t>& left_pad);
  // The stack itself, given each token's position [b, s] (int64) and the
  // attention mask [b, 1, s, keys] (true = not attended; undefined = none).
  at::Tensor run_stack(const at::Tensor& ids, KvCache* cache, const RowAdapters& rows,
                       HiddenStates* hidden, const at::Tensor& positions, const at::Tensor& mask);

  // ids [b, s] -> their embeddings [b, s, hidden].
  at::Tensor embed(const at::Tensor& ids) const;
  // The head's product: x [..., hidden] -> logits [..., vocab].
  at::Tensor head(const at::Tensor& x) const;

  LlamaConfig config_;
  at::Tensor inv_freq_;  // [head_dim / 2] float32
  PackedWeight packed_head_;
  PackedWeightBf16 bf16_head_;
  PackedWeightInt8 int8_head_;
  Bf16Path bf16_path_ = Bf16Path::kExact;
  bool checkpoint_layers_ = false;
};
TORCH_MODULE(LlamaForCausalLM);

// How loaded weights are laid out. kCheckpoint keeps each as the checkpoint
// has it ([out, in]), which training, merging and saving need. kPacked lays
// the projections and the head out in panels for packed_linear, the fastest
// layout for decoding and prefill on the CPU; the plain copies are never
// made. On other devices kPacked loads as kCheckpoint.
enum class WeightLayout { kCheckpoint, kPacked };

// The format the frozen base is held in (`weights:` in configs/router.yaml,
// `base_dtype:` in configs/train.yaml). kF32: every weight float32 (the
// exact path of the fixtures and the PEFT replay). kBf16 (CPU only): the
// projections and the head packed as bf16 pairs, the embedding table bf16;
// norms, biases, LoRA factors, activations and gradients stay float32, and
// with float32 activations (Bf16Path::kExact, the training layout) the
// results are those of float32 arithmetic on the bf16 values. A float32
// or float16 checkpoint is rounded to bf16. kAuto: kBf16 when the
// checkpoint stores its projections in BF16 or F16 and the device is the
// CPU, else kF32 — never a float32 copy of a bf16 model unless asked.
// kInt8 (CPU, WeightLayout::kPacked only: serving): the projections and
// the head quantized at load to int8 panels with a scale per output row
// (packed_linear_int8), the embedding table bf16; LoRA, norms and biases
// stay float32.
enum class BaseDtype { kAuto, kBf16, kF32, kInt8 };

// "auto", "bf16", "f32", "int8" <-> BaseDtype; parsing throws
// std::invalid_argument naming the value and the choices.
BaseDtype parse_base_dtype(const std::string& name);
const char* base_dtype_name(BaseDtype dtype);
// The format `model`'s base is held in (kF32, kBf16 or kInt8).
BaseDtype weights_of(const LlamaForCausalLM& model);
// What kAuto means for the checkpoint in `dir` on `device` (kBf16 or kF32);
// other values are returned as given.
BaseDtype resolve_base_dtype(BaseDtype dtype, const std::filesystem::path& dir,
                             const std::string& device);

// Loads config.json and the weights (model.safetensors, or the shards of
// model.safetensors.index.json; F32, F16 or BF16) from a Hugging Face
// directory, the base in `dtype` (see BaseDtype): float32 weights laid out
// by `layout`; bf16 weights packed, the products exact (kExact) in the
// checkpoint layout and on vdpbf16ps (kFast) in the packed one. Throws
// std::runtime_error naming the file and tensor for a missing or
// unexpected tensor, a shape mismatch, a damaged shard set (see
// CheckpointWeights) or a non-finite weight; std::invalid_argument for bf16
// or int8 on a device other than the CPU, and for int8 in the checkpoint
// layout (int8 is for serving).
//
// `on_progress`, when set, is called after each weight is in place with the
// checkpoint bytes read so far and in all (the stored bytes of every weight
// the model takes: a 7B checkpoint takes a minute to pack or quantize).
using LoadProgress = std::function<void(uint64_t bytes_done, uint64_t bytes_total)>;
LlamaForCausalLM load_llama(const std::filesystem::path& dir, const std::string& device = "cpu",
                            WeightLayout layout = WeightLayout::kCheckpoint,
                            BaseDtype dtype = BaseDtype::kF32,
                            const LoadProgress& on_progress = {});

// A LoadProgress that shows common/progress's bar (log lines every 10 s
// when stderr is not a terminal) labelled `label`, for checkpoints of
// kLoadBarMinBytes and more: smaller ones load in well under a second.
// Silent when `enabled` is false.
inline constexpr uint64_t kLoadBarMinBytes = uint64_t{64} << 20;
LoadProgress loading_bar(std::string label, bool enabled = true);

// Writes `model` as a Hugging Face directory: model.safetensors (the base
// weights as they are now, e.g. after merge_adapter) plus config.json and the
// tokenizer files copied from `source_dir`, each file written atomically.
// A packed model is refused (std::logic_error).
void save_llama(LlamaForCausalLM& model, const std::filesystem::path& source_dir,
                const std::filesystem::path& out_dir);

// Greedy decoding of `n_new` tokens after `prompt` (EOS not honoured), with
// the KV cache; `adapter_slot` -1 = base. For checks against references;
// the generation module offers sampling, stops and batching.
std::vector<int64_t> greedy_generate(LlamaForCausalLM& model, const std::vector<int64_t>& prompt,
                                     int n_new, int adapter_slot = -1);

}  // namespace vitrine::models
