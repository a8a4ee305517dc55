#include "models/llama.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/modules/container/modulelist.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <set>
#include <stdexcept>

#include "common/atomic_output.h"
#include "models/safetensors.h"

namespace vitrine::models {
namespace fs = std::filesystem;
namespace {

// [b, s, h, d] halves swapped with the first negated: RoPE's rotate-half layout.
at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// [batch, n_kv, seq, d] -> [batch, n_kv * groups, seq, d]
at::Tensor repeat_kv(const at::Tensor& x, int64_t groups) {
  if (groups == 1) return x;
  const auto b = x.size(0), n = x.size(1), s = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({b, n, groups, s, d}).reshape({b, n * groups, s, d});
}

}  // namespace

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", at::ones({dim}), /*requires_grad=*/false);
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  const at::Tensor variance = x.pow(2).mean(-1, /*keepdim=*/true);  // [..., 1]
  return weight * (x * at::rsqrt(variance + eps_));
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
                                       const at::Tensor& sin, at::Tensor* cache_k,
                                       at::Tensor* cache_v, const at::Tensor& mask,
                                       const RowAdapters& rows) {
  const int64_t b = x.size(0), s = x.size(1);
  at::Tensor q = q_proj(x, rows).view({b, s, n_heads_, head_dim_}).transpose(1, 2);  // [b, H, s, d]
  at::Tensor k =
      k_proj(x, rows).view({b, s, n_kv_heads_, head_dim_}).transpose(1, 2);  // [b, KV, s, d]
  at::Tensor v =
      v_proj(x, rows).view({b, s, n_kv_heads_, head_dim_}).transpose(1, 2);  // [b, KV, s, d]
  const at::Tensor c = cos.unsqueeze(1), sn = sin.unsqueeze(1);              // [b, 1, s, d]
  q = q * c + rotate_half(q) * sn;
  k = k * c + rotate_half(k) * sn;
  if (cache_k != nullptr) {
    if (cache_k->defined()) {
      k = at::cat({*cache_k, k}, 2);  // [b, KV, past + s, d]
      v = at::cat({*cache_v, v}, 2);
    }
    *cache_k = k;
    *cache_v = v;
  }
  const int64_t groups = n_heads_ / n_kv_heads_;
  const at::Tensor kk = repeat_kv(k, groups), vv = repeat_kv(v, groups);  // [b, H, total, d]
  at::Tensor scores = at::matmul(q, kk.transpose(2, 3)) /
                      std::sqrt(static_cast<double>(head_dim_));  // [b, H, s, total]
  if (mask.defined()) scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  const at::Tensor probs = at::softmax(scores, -1);  // [b, H, s, total]
  const at::Tensor out =
      at::matmul(probs, vv).transpose(1, 2).reshape({b, s, n_heads_ * head_dim_});  // [b, s, H*d]
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
  return down_proj(at::silu(gate_proj(x, rows)) * up_proj(x, rows), rows);
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig& c) {
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  self_attn = register_module("self_attn", LlamaAttention(c));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  mlp = register_module("mlp", LlamaMlp(c));
}

at::Tensor LlamaDecoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& cos,
                                          const at::Tensor& sin, at::Tensor* cache_k,
                                          at::Tensor* cache_v, const at::Tensor& mask,
                                          const RowAdapters& rows) {
  const at::Tensor h = x + self_attn(input_layernorm(x), cos, sin, cache_k, cache_v, mask, rows);
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
  const int64_t b = ids.size(0), s = ids.size(1);
  const int64_t past = cache != nullptr ? cache->length : 0;
  const int64_t total = past + s;
  const int64_t n_layers = static_cast<int64_t>(model->layers->size());
  if (!left_pad.empty() && static_cast<int64_t>(left_pad.size()) != b) {
    throw std::invalid_argument(
        fmt::format("forward: {} left_pad entries for a batch of {}", left_pad.size(), b));
  }
  if (cache != nullptr && cache->k.empty()) {
    cache->k.resize(n_layers);
    cache->v.resize(n_layers);
  }
  at::Tensor x = model->embed_tokens(ids);  // [b, s, hidden]
  const auto long_opts = x.options().dtype(at::kLong);
  const at::Tensor pad =
      left_pad.empty() ? at::zeros({b}, long_opts)
                       : at::tensor(left_pad, at::TensorOptions().dtype(at::kLong)).to(x.device());
  // Positions of this call's tokens, per row, counted from the row's first real token.
  const at::Tensor qpos = at::arange(past, total, long_opts).unsqueeze(0).expand({b, s});  // [b, s]
  const at::Tensor pos = (qpos - pad.unsqueeze(1)).clamp_min(0).to(x.scalar_type());       // [b, s]
  // RoPE angles of those positions, as transformers computes them.
  const at::Tensor inv_freq = config_.rope_scaling.type == RopeScalingType::kDynamic
                                  ? rope_inv_freq(config_, total).to(x.device())
                                  : inv_freq_;
  const at::Tensor freqs = pos.unsqueeze(-1) * inv_freq.view({1, 1, -1});  // [b, s, d/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);                      // [b, s, d]
  const at::Tensor cos = emb.cos(), sin = emb.sin();
  // A real query t (absolute past + t) sees keys j with pad <= j <= past + t.
  // Padding queries see the padding before them (their output is never used,
  // but a fully masked row would turn into NaNs that reach the cache).
  at::Tensor mask;
  if (s > 1 || !left_pad.empty()) {
    const at::Tensor kpos = at::arange(0, total, long_opts).view({1, 1, total});  // [1, 1, total]
    const at::Tensor q3 = qpos.unsqueeze(-1), pad3 = pad.view({b, 1, 1});  // [b, s, 1], [b, 1, 1]
    mask = (kpos > q3) | ((kpos < pad3) & (q3 >= pad3));                   // [b, s, total]
    mask = mask.unsqueeze(1);                                              // [b, 1, s, total]
  }
  if (hidden != nullptr) hidden->states = {x};
  for (int64_t i = 0; i < n_layers; ++i) {
    auto layer = model->layers[i]->as<LlamaDecoderLayer>();
    x = layer->forward(x, cos, sin, cache ? &cache->k[i] : nullptr, cache ? &cache->v[i] : nullptr,
                       mask, rows);
    if (hidden != nullptr && i + 1 < n_layers) hidden->states.push_back(x);
  }
  if (hidden != nullptr) hidden->last_layer_prenorm = x;
  x = model->norm(x);
  if (hidden != nullptr) hidden->states.push_back(x);
  if (cache != nullptr) cache->length = total;
  return at::linear(x, lm_head_weight());  // [b, s, vocab]
}

LlamaForCausalLM load_llama(const fs::path& dir, const std::string& device) {
  const LlamaConfig config = load_llama_config(dir / "config.json");
  const fs::path weights = dir / "model.safetensors";
  if (!fs::exists(weights)) {
    if (fs::exists(dir / "model.safetensors.index.json")) {
      throw std::runtime_error(
          fmt::format("'{}' is a sharded checkpoint: not supported yet (merge the shards into "
                      "one model.safetensors)",
                      dir.string()));
    }
    throw std::runtime_error(fmt::format("no model.safetensors in '{}'", dir.string()));
  }
  const SafetensorsFile file = SafetensorsFile::open(weights);
  LlamaForCausalLM model(config);
  at::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& item : model->named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    if (!file.contains(name)) {
      throw std::runtime_error(
          fmt::format("tensor '{}' missing from '{}': a checkpoint of another architecture?", name,
                      weights.string()));
    }
    const at::Tensor t = file.get(name);
    if (t.sizes() != item.value().sizes()) {
      throw std::runtime_error(
          fmt::format("tensor '{}' in '{}' has shape {}, config.json implies {}", name,
                      weights.string(), c10::str(t.sizes()), c10::str(item.value().sizes())));
    }
    item.value().copy_(t);
    used.insert(name);
  }
  for (const auto& name : file.names()) {
    if (used.count(name) == 0 && !(config.tie_word_embeddings && name == "lm_head.weight") &&
        name.find("rotary_emb.inv_freq") == std::string::npos) {
      throw std::runtime_error(
          fmt::format("unexpected tensor '{}' in '{}': config.json does not describe this "
                      "checkpoint",
                      name, weights.string()));
    }
  }
  model->to(at::Device(device));
  model->eval();
  return model;
}

void save_llama(LlamaForCausalLM& model, const fs::path& source_dir, const fs::path& out_dir) {
  fs::create_directories(out_dir);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& item : model->named_parameters(/*recurse=*/true)) {
    tensors.emplace_back(item.key(), item.value().detach().to(at::kCPU));
  }
  save_safetensors(out_dir / "model.safetensors", tensors);
  for (const char* name : {"config.json", "generation_config.json", "tokenizer.json",
                           "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path from = source_dir / name;
    if (!fs::exists(from)) continue;
    std::ifstream in(from, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    write_file_atomic(out_dir / name, bytes);
  }
}

std::vector<int64_t> greedy_generate(LlamaForCausalLM& model, const std::vector<int64_t>& prompt,
                                     int n_new, int adapter_slot) {
  at::NoGradGuard no_grad;
  KvCache cache;
  const RowAdapters rows = adapter_slot >= 0 ? RowAdapters{adapter_slot} : RowAdapters{};
  const auto device = model->lm_head_weight().device();
  at::Tensor ids =
      at::tensor(prompt, at::TensorOptions().dtype(at::kLong)).unsqueeze(0).to(device);  // [1, n]
  std::vector<int64_t> out;
  for (int i = 0; i < n_new; ++i) {
    const at::Tensor logits = model->forward(ids, &cache, rows);  // [1, s, vocab]
    const int64_t next = logits.select(1, logits.size(1) - 1).argmax(-1).item<int64_t>();
    out.push_back(next);
    ids = at::full({1, 1}, next, at::TensorOptions().dtype(at::kLong).device(device));
  }
  return out;
}

}  // namespace vitrine::models
