#include "models/llama.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/record_function.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/modules/container/modulelist.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>

#include "common/atomic_output.h"
#include "common/text_file.h"
#include "models/frozen_linear.h"
#include "models/kernels/decode_attention.h"
#include "models/kernels/packed_linear.h"
#include "models/kernels/small_linear.h"
#include "models/runtime.h"
#include "models/safetensors.h"
#include "models/training_ops.h"

namespace vitrine::models {
namespace fs = std::filesystem;
namespace {

// Appends this call's keys or values [b, KV, s, d] to a layer's cache
// buffer at position `past` and returns the filled part [b, KV, past + s, d].
at::Tensor append_to_cache(at::Tensor& buffer, const at::Tensor& fresh, int64_t past,
                           int64_t reserved) {
  const int64_t s = fresh.size(2), needed = past + s;
  if (!buffer.defined() || buffer.size(2) < needed) {
    const int64_t old = buffer.defined() ? buffer.size(2) : 0;
    const int64_t capacity = std::max({needed, reserved, 2 * old});
    at::Tensor grown = at::empty({fresh.size(0), fresh.size(1), capacity, fresh.size(3)},
                                 fresh.options());  // [b, KV, capacity, d]
    if (past > 0) grown.narrow(2, 0, past).copy_(buffer.narrow(2, 0, past));
    buffer = grown;
  }
  buffer.narrow(2, past, s).copy_(fresh);
  return buffer.narrow(2, 0, needed);
}

// One decoder layer under activation checkpointing: the forward runs
// without a graph and keeps the layer's input (and the random generator's
// state, so LoRA dropout draws the same masks); the backward runs the
// forward again with a graph and backpropagates through it, which
// accumulates the LoRA factors' gradients and yields the input's.
struct RecomputedLayer : torch::autograd::Function<RecomputedLayer> {
  // Only x is an input of the graph; the angles and the mask (which may be
  // undefined, which autograd refuses among inputs) come by pointer.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            LlamaDecoderLayerImpl* layer, const at::Tensor* cos,
                            const at::Tensor* sin, const at::Tensor* mask,
                            const RowAdapters& rows) {
    ctx->save_for_backward({x});
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    ctx->saved_data["cos"] = *cos;
    ctx->saved_data["sin"] = *sin;
    ctx->saved_data["mask"] = *mask;
    ctx->saved_data["rows"] = std::vector<int64_t>(rows.begin(), rows.end());
    at::CPUGeneratorImpl* generator = cpu_generator();
    {
      std::lock_guard<std::mutex> lock(generator->mutex_);
      ctx->saved_data["rng"] = at::Tensor::wrap_tensor_impl(generator->get_state());
    }
    return layer->forward(x, *cos, *sin, nullptr, 0, *mask, rows);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor input = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    auto* layer = reinterpret_cast<LlamaDecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    const std::vector<int64_t> row_ids = ctx->saved_data["rows"].toIntVector();
    const RowAdapters rows(row_ids.begin(), row_ids.end());
    at::CPUGeneratorImpl* generator = cpu_generator();
    at::Tensor now;
    {
      std::lock_guard<std::mutex> lock(generator->mutex_);
      now = at::Tensor::wrap_tensor_impl(generator->get_state());
      generator->set_state(*ctx->saved_data["rng"].toTensor().unsafeGetTensorImpl());
    }
    at::Tensor y;
    {
      at::AutoGradMode with_graph(true);
      y = layer->forward(input, ctx->saved_data["cos"].toTensor(),
                         ctx->saved_data["sin"].toTensor(), nullptr, 0,
                         ctx->saved_data["mask"].toTensor(), rows);
    }
    {
      std::lock_guard<std::mutex> lock(generator->mutex_);
      generator->set_state(*now.unsafeGetTensorImpl());
    }
    torch::autograd::backward({y}, {grads[0]});
    return {input.grad(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }

  static at::CPUGeneratorImpl* cpu_generator() {
    return at::check_generator<at::CPUGeneratorImpl>(at::detail::getDefaultCPUGenerator());
  }
};

}  // namespace

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", at::ones({dim}), /*requires_grad=*/false);
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  return rms_norm(x, weight, eps_, is_training());
}

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& c)
    : n_heads_(c.num_attention_heads), n_kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim) {
  q_proj = register_module("q_proj", LoraLinear(c.hidden_size, n_heads_ * head_dim_, c.qkv_bias));
  k_proj =
      register_module("k_proj", LoraLinear(c.hidden_size, n_kv_heads_ * head_dim_, c.qkv_bias));
  v_proj =
      register_module("v_proj", LoraLinear(c.hidden_size, n_kv_heads_ * head_dim_, c.qkv_bias));
  o_proj = register_module("o_proj", LoraLinear(n_heads_ * head_dim_, c.hidden_size, c.o_bias));
}

at::Tensor LlamaAttentionImpl::forward(const at::Tensor& x, const at::Tensor& cos,
                                       const at::Tensor& sin, KvCache* cache, size_t layer,
                                       const at::Tensor& mask, const RowAdapters& rows) {
  const int64_t b = x.size(0), s = x.size(1);
  at::Tensor q = q_proj(x, rows).view({b, s, n_heads_, head_dim_}).transpose(1, 2);  // [b, H, s, d]
  at::Tensor k =
      k_proj(x, rows).view({b, s, n_kv_heads_, head_dim_}).transpose(1, 2);  // [b, KV, s, d]
  at::Tensor v =
      v_proj(x, rows).view({b, s, n_kv_heads_, head_dim_}).transpose(1, 2);  // [b, KV, s, d]
  const at::Tensor c = cos.unsqueeze(1), sn = sin.unsqueeze(1);              // [b, 1, s, d]
  q = rope(q, c, sn, is_training());
  k = rope(k, c, sn, is_training());
  if (cache != nullptr) {
    k = append_to_cache(cache->k[layer], k, cache->length, cache->reserved);  // [b, KV, total, d]
    v = append_to_cache(cache->v[layer], v, cache->length, cache->reserved);
  }
  // Grouped-query attention without copying keys and values per head: the
  // `groups` query heads that share a KV head are stacked along the rows.
  const int64_t groups = n_heads_ / n_kv_heads_;
  const at::Tensor qg = q.reshape({b, n_kv_heads_, groups * s, head_dim_});  // [b, KV, g*s, d]
  // Decode steps (a few query rows) use the one-loop kernels; prefill, BLAS.
  const bool small = groups * s <= 16 && decode_attention_applies(qg, k);
  at::Tensor attended;  // [b, KV, g*s, d]
  if (small) {
    attended =
        attention_values(attention_softmax(attention_scores(qg, k), mask, groups, head_dim_), v);
  } else {
    // Training keeps q, k and v here, not a score matrix per head.
    attended = attention_core(qg, k, v, mask, groups, is_training());
  }
  const at::Tensor out = attended.view({b, n_heads_, s, head_dim_})
                             .transpose(1, 2)
                             .reshape({b, s, n_heads_ * head_dim_});  // [b, s, H*d]
  return o_proj(out, rows);
}

LlamaMlpImpl::LlamaMlpImpl(const LlamaConfig& c) {
  gate_proj =
      register_module("gate_proj", LoraLinear(c.hidden_size, c.intermediate_size, c.mlp_bias));
  up_proj = register_module("up_proj", LoraLinear(c.hidden_size, c.intermediate_size, c.mlp_bias));
  down_proj =
      register_module("down_proj", LoraLinear(c.intermediate_size, c.hidden_size, c.mlp_bias));
}

at::Tensor LlamaMlpImpl::forward(const at::Tensor& x, const RowAdapters& rows) {
  return down_proj(swiglu(gate_proj(x, rows), up_proj(x, rows)), rows);
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig& c) {
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  self_attn = register_module("self_attn", LlamaAttention(c));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  mlp = register_module("mlp", LlamaMlp(c));
}

at::Tensor LlamaDecoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& cos,
                                          const at::Tensor& sin, KvCache* cache, size_t layer,
                                          const at::Tensor& mask, const RowAdapters& rows) {
  const at::Tensor h = x + self_attn(input_layernorm(x), cos, sin, cache, layer, mask, rows);
  return h + mlp(post_attention_layernorm(h), rows);
}

LlamaModelImpl::LlamaModelImpl(const LlamaConfig& c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  embed_tokens->weight.set_requires_grad(false);
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(LlamaDecoderLayer(c));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(LlamaConfig config) : config_(std::move(config)) {
  model = register_module("model", LlamaModel(config_));
  if (!config_.tie_word_embeddings) {
    lm_head = register_module(
        "lm_head",
        torch::nn::Linear(
            torch::nn::LinearOptions(config_.hidden_size, config_.vocab_size).bias(false)));
    lm_head->weight.set_requires_grad(false);
  }
  inv_freq_ = register_buffer("inv_freq", rope_inv_freq(config_));
}

at::Tensor LlamaForCausalLMImpl::lm_head_weight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

at::Tensor LlamaForCausalLMImpl::embed(const at::Tensor& ids) const {
  if (base_int8()) {
    if (lm_head) return at::embedding(model->embed_tokens->weight, ids).to(at::kFloat);
    // Tied: token t's row is column t % 16 of panel t / 16, times its scale.
    const at::Tensor by_panel = int8_head_.panels.transpose(1, 2);  // [panels, 16, hidden] int8
    const at::Tensor rows =
        by_panel.index({ids.div(kPanelWidth, "floor"), ids.remainder(kPanelWidth)});
    return rows.to(at::kFloat) * int8_head_.scales.index({ids}).unsqueeze(-1);  // [b, s, hidden]
  }
  if (base_bf16()) {
    if (lm_head) return at::embedding(model->embed_tokens->weight, ids).to(at::kFloat);
    // Tied: token t's row is column t % 16 of panel t / 16, its features by pairs.
    const at::Tensor by_panel = bf16_head_.pairs.permute({0, 2, 1, 3});  // [panels, 16, in/2, 2]
    const at::Tensor rows =
        by_panel.index({ids.div(kPanelWidth, "floor"), ids.remainder(kPanelWidth)});
    return rows.flatten(-2).narrow(-1, 0, config_.hidden_size).to(at::kFloat);  // [b, s, hidden]
  }
  if (!packed() || lm_head) return at::embedding(model->embed_tokens->weight, ids);
  // Tied and packed: token t's row is column t % 16 of panel t / 16.
  const at::Tensor by_panel = packed_head_.panels.transpose(1, 2);  // [panels, 16, hidden]
  return by_panel.index({ids.div(kPanelWidth, "floor"), ids.remainder(kPanelWidth)});
}

at::Tensor LlamaForCausalLMImpl::head(const at::Tensor& x) const {
  RECORD_USER_SCOPE("vitrine::head");
  if (base_bf16()) return frozen_bf16_linear(x, bf16_head_, {}, bf16_path_);
  if (base_int8()) return packed_linear_int8(x, int8_head_);
  return packed() ? packed_linear(x, packed_head_) : fast_linear(x, lm_head_weight());
}

void LlamaForCausalLMImpl::set_bf16_path(Bf16Path path) {
  if (!base_bf16()) return;
  bf16_path_ = path;
  for (auto& [name, projection] : projections()) projection->set_bf16_path(path);
}

at::Tensor LlamaForCausalLMImpl::head_weight_float() const {
  if (base_bf16()) return unpack_weight_bf16(bf16_head_).to(at::kFloat);
  if (base_int8()) return dequantize_weight_int8(int8_head_);
  if (packed()) return unpack_weight(packed_head_);
  return lm_head_weight();
}

std::vector<std::pair<std::string, LoraLinear>> LlamaForCausalLMImpl::projections() {
  std::vector<std::pair<std::string, LoraLinear>> out;
  for (size_t i = 0; i < model->layers->size(); ++i) {
    auto layer = model->layers[i]->as<LlamaDecoderLayer>();
    const std::string p = fmt::format("model.layers.{}.", i);
    out.emplace_back(p + "self_attn.q_proj", layer->self_attn->q_proj);
    out.emplace_back(p + "self_attn.k_proj", layer->self_attn->k_proj);
    out.emplace_back(p + "self_attn.v_proj", layer->self_attn->v_proj);
    out.emplace_back(p + "self_attn.o_proj", layer->self_attn->o_proj);
    out.emplace_back(p + "mlp.gate_proj", layer->mlp->gate_proj);
    out.emplace_back(p + "mlp.up_proj", layer->mlp->up_proj);
    out.emplace_back(p + "mlp.down_proj", layer->mlp->down_proj);
  }
  return out;
}

at::Tensor LlamaForCausalLMImpl::forward(const at::Tensor& ids, KvCache* cache,
                                         const RowAdapters& rows, HiddenStates* hidden,
                                         const std::vector<int64_t>& left_pad) {
  return head(decode(ids, cache, rows, hidden, left_pad));  // [b, s, vocab]
}

at::Tensor LlamaForCausalLMImpl::forward_last(const at::Tensor& ids, KvCache* cache,
                                              const RowAdapters& rows,
                                              const std::vector<int64_t>& left_pad) {
  const at::Tensor x = decode(ids, cache, rows, nullptr, left_pad);  // [b, s, hidden]
  return head(x.select(1, x.size(1) - 1));                           // [b, vocab]
}

at::Tensor LlamaForCausalLMImpl::forward_packed(const at::Tensor& ids, const at::Tensor& segments,
                                                const RowAdapters& rows) {
  if (segments.sizes() != ids.sizes()) {
    throw std::invalid_argument(fmt::format("forward_packed: segments {} for ids {}",
                                            c10::str(segments.sizes()), c10::str(ids.sizes())));
  }
  const int64_t b = ids.size(0), s = ids.size(1);
  const at::Tensor seg = segments.to(ids.device(), at::kLong);
  const at::Tensor index = at::arange(s, seg.options()).unsqueeze(0).expand({b, s});  // [b, s]
  // Each token's position counts from the first token of its segment.
  at::Tensor starts = seg.narrow(1, 1, s - 1) != seg.narrow(1, 0, s - 1);            // [b, s-1]
  starts = at::cat({at::ones({b, 1}, starts.options()), starts}, 1);                 // [b, s]
  const at::Tensor first = std::get<0>(at::cummax(at::where(starts, index, 0), 1));  // [b, s]
  const at::Tensor q = index.unsqueeze(-1), k = index.unsqueeze(1);  // [b, s, 1], [b, 1, s]
  // Causal within a segment; nothing across segments.
  at::Tensor mask = (k > q) | (seg.unsqueeze(-1) != seg.unsqueeze(1));  // [b, s, s]
  if (const auto window = config_.sliding_window; window && s > *window) {
    mask = mask | (k <= q - *window);  // within a segment, distances are the same
  }
  const at::Tensor x = run_stack(ids, nullptr, rows, nullptr, index - first, mask.unsqueeze(1));
  return head(x);  // [b, s, vocab]
}

at::Tensor LlamaForCausalLMImpl::decode(const at::Tensor& ids, KvCache* cache,
                                        const RowAdapters& rows, HiddenStates* hidden,
                                        const std::vector<int64_t>& left_pad) {
  const int64_t b = ids.size(0), s = ids.size(1);
  const int64_t past = cache != nullptr ? cache->length : 0;
  const int64_t total = past + s;
  if (!left_pad.empty() && static_cast<int64_t>(left_pad.size()) != b) {
    throw std::invalid_argument(
        fmt::format("forward: {} left_pad entries for a batch of {}", left_pad.size(), b));
  }
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(ids.device());
  const at::Tensor pad =
      left_pad.empty()
          ? at::zeros({b}, long_opts)
          : at::tensor(left_pad, at::TensorOptions().dtype(at::kLong)).to(ids.device());
  // Positions of this call's tokens, per row, counted from the row's first real token.
  const at::Tensor qpos = at::arange(past, total, long_opts).unsqueeze(0).expand({b, s});  // [b, s]
  const at::Tensor pos = (qpos - pad.unsqueeze(1)).clamp_min(0);                           // [b, s]
  // A real query t (absolute past + t) sees keys j with pad <= j <= past + t.
  // Padding queries see the padding before them (their output is never used,
  // but a fully masked row would turn into NaNs that reach the cache).
  // With a sliding window w, only keys j > past + t - w: the same distance
  // in a row's own positions, since padding shifts query and key alike.
  const std::optional<int64_t> window = config_.sliding_window;
  const bool windowed = window && total > *window;
  at::Tensor mask;
  if (s > 1 || !left_pad.empty() || windowed) {
    const at::Tensor kpos = at::arange(0, total, long_opts).view({1, 1, total});  // [1, 1, total]
    const at::Tensor q3 = qpos.unsqueeze(-1), pad3 = pad.view({b, 1, 1});  // [b, s, 1], [b, 1, 1]
    mask = (kpos > q3) | ((kpos < pad3) & (q3 >= pad3));                   // [b, s, total]
    if (windowed) mask = mask | (kpos <= q3 - *window);
    mask = mask.unsqueeze(1);  // [b, 1, s, total]
  }
  return run_stack(ids, cache, rows, hidden, pos, mask);
}

at::Tensor LlamaForCausalLMImpl::run_stack(const at::Tensor& ids, KvCache* cache,
                                           const RowAdapters& rows, HiddenStates* hidden,
                                           const at::Tensor& positions, const at::Tensor& mask) {
  const int64_t n_layers = static_cast<int64_t>(model->layers->size());
  const int64_t total = (cache != nullptr ? cache->length : 0) + ids.size(1);
  if (cache != nullptr && cache->k.empty()) {
    cache->k.resize(n_layers);
    cache->v.resize(n_layers);
  }
  at::Tensor x = embed(ids);  // [b, s, hidden]
  // RoPE angles of the positions, as transformers computes them.
  const at::Tensor inv_freq = config_.rope_scaling.type == RopeScalingType::kDynamic
                                  ? rope_inv_freq(config_, total).to(x.device())
                                  : inv_freq_;
  const at::Tensor freqs =
      positions.to(x.scalar_type()).unsqueeze(-1) * inv_freq.view({1, 1, -1});  // [b, s, d/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);                           // [b, s, d]
  const at::Tensor cos = emb.cos(), sin = emb.sin();
  if (hidden != nullptr) hidden->states = {x};
  // Checkpointed layers need an input in the graph: the first layer's
  // (from the frozen embedding) is not, and runs as usual.
  const bool recompute = checkpoint_layers_ && cache == nullptr && c10::GradMode::is_enabled();
  for (int64_t i = 0; i < n_layers; ++i) {
    auto layer = model->layers[i]->as<LlamaDecoderLayer>();
    if (recompute && x.requires_grad() && hidden == nullptr) {
      x = RecomputedLayer::apply(x, layer, &cos, &sin, &mask, rows);
      continue;
    }
    x = layer->forward(x, cos, sin, cache, static_cast<size_t>(i), mask, rows);
    if (hidden != nullptr && i + 1 < n_layers) hidden->states.push_back(x);
  }
  if (hidden != nullptr) hidden->last_layer_prenorm = x;
  x = model->norm(x);
  if (hidden != nullptr) hidden->states.push_back(x);
  if (cache != nullptr) cache->length = total;
  return x;
}

void save_llama(LlamaForCausalLM& model, const fs::path& source_dir, const fs::path& out_dir) {
  fs::create_directories(out_dir);
  // A bf16 base is saved as the float32 values of its bf16 weights.
  std::map<std::string, LoraLinear> projections;
  for (auto& [path, module] : model->projections()) projections.emplace(path + ".weight", module);
  const std::string head_name =
      model->config().tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& item : model->named_parameters(/*recurse=*/true)) {
    at::Tensor value = item.value().detach();
    if (const auto it = projections.find(item.key()); it != projections.end()) {
      value = it->second->base_weight();
    } else if (item.key() == head_name) {
      value = model->head_weight_float();
    }
    tensors.emplace_back(item.key(), value.to(at::kCPU, at::kFloat));
  }
  save_safetensors(out_dir / "model.safetensors", tensors);
  for (const char* name : {"config.json", "generation_config.json", "tokenizer.json",
                           "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path from = source_dir / name;
    if (!fs::exists(from)) continue;
    write_file_atomic(out_dir / name, read_whole_file(from, "merged model"));
  }
}

std::vector<int64_t> greedy_generate(LlamaForCausalLM& model, const std::vector<int64_t>& prompt,
                                     int n_new, int adapter_slot) {
  at::NoGradGuard no_grad;
  KvCache cache;
  cache.reserve(static_cast<int64_t>(prompt.size()) + n_new);
  const RowAdapters rows = adapter_slot >= 0 ? RowAdapters{adapter_slot} : RowAdapters{};
  const auto device = model->lm_head_weight().device();
  at::Tensor ids =
      at::tensor(prompt, at::TensorOptions().dtype(at::kLong)).unsqueeze(0).to(device);  // [1, n]
  std::vector<int64_t> out;
  for (int i = 0; i < n_new; ++i) {
    const int64_t next = model->forward_last(ids, &cache, rows).argmax(-1).item<int64_t>();
    out.push_back(next);
    ids = at::full({1, 1}, next, at::TensorOptions().dtype(at::kLong).device(device));
  }
  return out;
}

}  // namespace vitrine::models
