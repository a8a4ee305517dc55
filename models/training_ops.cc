#include "models/training_ops.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "models/kernels/norm_rope.h"

namespace vitrine::models {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// softmax(q·kᵀ / √d) with the mask: [b, KV, g·s, keys].
at::Tensor attention_probs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& mask,
                           int64_t groups) {
  return attention_softmax(at::matmul(q, k.transpose(2, 3)), mask, groups, q.size(3));
}

// Rows of each query head per block of the training attention: a block
// multiplies by the keys its rows attend (up to the last one any of them
// does), so under a causal mask the blocks above the diagonal are never
// computed (9/16 of the products at 512 positions), and the scores in
// flight are a block's, not the whole [g·s, keys] of every head. Measured
// (forward + backward of one layer, one thread, CPU time, TinyLlama's
// shape at 512 positions): 64 rows 64 ms, 128 rows 79, 256 rows 103, 32
// rows as 64 in twice the calls; the forward alone 20 ms at 64 rows, 45 to
// 49 unblocked.
constexpr int64_t kQueryBlock = 64;

// Query rows [begin, begin + rows) of every head, the keys [0, keys) any
// of them attends, and the first key any of them does not (keys before it
// need no masking: under a causal mask, only the block on the diagonal).
struct QueryBlock {
  int64_t begin = 0, rows = 0, keys = 0, masked_from = 0;
};

// The blocks of s query rows over `keys` keys under mask [b, 1, s, keys]
// (true = not attended; undefined = all attended).
std::vector<QueryBlock> query_blocks(const at::Tensor& mask, int64_t s, int64_t keys,
                                     int64_t block) {
  // Per row over the batch: the last key attended + 1, the first masked.
  std::vector<int64_t> last(s, keys), first(s, keys);
  if (mask.defined()) {
    const at::Tensor any_masked = mask.any(0).contiguous(), all_masked = mask.all(0).contiguous();
    const bool *some = any_masked.data_ptr<bool>(), *all = all_masked.data_ptr<bool>();
    for (int64_t r = 0; r < s; ++r) {
      int64_t j = keys;
      while (j > 0 && all[r * keys + j - 1]) --j;
      last[r] = j;
      j = 0;
      while (j < keys && !some[r * keys + j]) ++j;
      first[r] = j;
    }
  }
  std::vector<QueryBlock> blocks;
  for (int64_t begin = 0; begin < s; begin += block) {
    QueryBlock q{begin, std::min(block, s - begin), keys, keys};
    const auto rows = [&](const std::vector<int64_t>& v) {
      return std::pair(v.begin() + begin, v.begin() + begin + q.rows);
    };
    // A block with nothing attended keeps one key (its rows softmax to NaN, as unblocked).
    auto [b0, b1] = rows(last);
    q.keys = std::max<int64_t>(1, *std::max_element(b0, b1));
    auto [f0, f1] = rows(first);
    q.masked_from = std::min(q.keys, *std::min_element(f0, f1));
    blocks.push_back(q);
  }
  return blocks;
}

// Rows of block `q` of every query head: [b, KV, g·rows, d] (a copy) from
// x [b, KV, g·s, d].
at::Tensor block_rows(const at::Tensor& x, const QueryBlock& q, int64_t groups) {
  const int64_t b = x.size(0), kv = x.size(1), s = x.size(2) / groups, d = x.size(3);
  return x.view({b, kv, groups, s, d})
      .narrow(3, q.begin, q.rows)
      .reshape({b, kv, groups * q.rows, d});
}

// softmax(qs·kᵀ, masked) of a block, qs the block's queries already
// scaled by 1/√d, k its keys: [b, KV, g·rows, q.keys].
at::Tensor block_probs(const at::Tensor& qs, const at::Tensor& k, const at::Tensor& mask,
                       const QueryBlock& q, int64_t groups) {
  at::Tensor scores = at::matmul(qs, k.transpose(2, 3));
  if (q.masked_from < q.keys) {
    // The mask as 0 / −∞ added to the columns that need it: one vectorised
    // pass over the heads' scores, the bias built once per block.
    const int64_t b = scores.size(0), kv = scores.size(1), width = q.keys - q.masked_from;
    const at::Tensor bias = at::zeros({b, 1, 1, q.rows, width}, scores.options())
                                .masked_fill_(mask.narrow(2, q.begin, q.rows)
                                                  .narrow(3, q.masked_from, width)
                                                  .reshape({b, 1, 1, q.rows, width}),
                                              -std::numeric_limits<float>::infinity());
    scores.view({b, kv, groups, q.rows, q.keys}).narrow(4, q.masked_from, width).add_(bias);
  }
  return at::_softmax_out(scores, scores, -1, /*half_to_float=*/false);
}

// softmax(q·kᵀ / √d, masked)·v by query blocks: [b, KV, g·s, d].
at::Tensor blocked_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const at::Tensor& mask, int64_t groups) {
  const int64_t b = q.size(0), kv = q.size(1), s = q.size(2) / groups, d = q.size(3);
  const at::Tensor qs = q * (1.0 / std::sqrt(static_cast<double>(d)));
  at::Tensor out = at::empty({b, kv, groups, s, d}, q.options());
  for (const QueryBlock& block : query_blocks(mask, s, k.size(2), kQueryBlock)) {
    const at::Tensor p =
        block_probs(block_rows(qs, block, groups), k.narrow(2, 0, block.keys), mask, block,
                    groups);  // [b, KV, g·rows, keys]
    out.narrow(3, block.begin, block.rows)
        .copy_(at::matmul(p, v.narrow(2, 0, block.keys)).view({b, kv, groups, block.rows, d}));
  }
  return out.view({b, kv, groups * s, d});
}

struct AttentionCore : torch::autograd::Function<AttentionCore> {
  // The mask comes by pointer: it may be undefined, which autograd refuses
  // among the inputs, and it has no gradient.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const at::Tensor* mask, int64_t groups) {
    ctx->save_for_backward({q, k, v});
    ctx->saved_data["mask"] = *mask;
    ctx->saved_data["groups"] = groups;
    return blocked_attention(q, k, v, *mask, groups);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2];
    const at::Tensor mask = ctx->saved_data["mask"].toTensor();
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const int64_t b = q.size(0), kv = q.size(1), s = q.size(2) / groups, d = q.size(3);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    const at::Tensor qs = q * scale;
    const at::Tensor d_out = grads[0].contiguous();  // [b, KV, g·s, d]
    at::Tensor d_q = at::empty({b, kv, groups, s, d}, q.options());
    // [b, KV, keys, d], contiguous (v is a transposed view of its projection)
    at::Tensor d_k = at::zeros(k.sizes(), k.options()), d_v = at::zeros(v.sizes(), v.options());
    for (const QueryBlock& block : query_blocks(mask, s, k.size(2), kQueryBlock)) {
      const at::Tensor qb = block_rows(qs, block, groups), kb = k.narrow(2, 0, block.keys),
                       vb = v.narrow(2, 0, block.keys);
      const at::Tensor p = block_probs(qb, kb, mask, block, groups);  // recomputed
      const at::Tensor d_ob = block_rows(d_out, block, groups);       // [b, KV, g·rows, d]
      const int64_t heads = b * kv, rows = groups * block.rows;
      d_v.view({heads, -1, d})
          .narrow(1, 0, block.keys)
          .baddbmm_(p.view({heads, rows, block.keys}).transpose(1, 2), d_ob.view({heads, rows, d}));
      // softmax's backward: P ∘ (dP − Σ dP ∘ P), the gradient of the scaled scores.
      const at::Tensor d_scores =
          at::_softmax_backward_data(at::matmul(d_ob, vb.transpose(2, 3)), p, -1, at::kFloat);
      d_q.narrow(3, block.begin, block.rows)
          .copy_(at::matmul(d_scores, kb).mul_(scale).view({b, kv, groups, block.rows, d}));
      d_k.view({heads, -1, d})
          .narrow(1, 0, block.keys)
          .baddbmm_(d_scores.view({heads, rows, block.keys}).transpose(1, 2),
                    qb.view({heads, rows, d}));
    }
    return {d_q.view({b, kv, groups * s, d}), d_k, d_v, at::Tensor(), at::Tensor()};
  }
};

struct SwiGlu : torch::autograd::Function<SwiGlu> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    ctx->save_for_backward({gate, up});
    return at::silu(gate) * up;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &gate = saved[0], &up = saved[1], &dy = grads[0];
    // silu'(g) = σ(g)·(1 + g·(1 − σ(g))), applied by ATen's one fused kernel.
    return {at::silu_backward(dy * up, gate), at::silu(gate).mul_(dy)};
  }
};

// [..., d] halves swapped with the first negated.
at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

at::Tensor rope_formula(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}

struct Rope : torch::autograd::Function<Rope> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor* cos,
                            const at::Tensor* sin) {
    ctx->saved_data["cos"] = *cos;
    ctx->saved_data["sin"] = *sin;
    return rope_rows(x, *cos, *sin, /*backward=*/false);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // rotate_half is R·x with Rᵀ = −R, so the gradient of R·x·sin is −R·(g·sin).
    return {rope_rows(grads[0], ctx->saved_data["cos"].toTensor(),
                      ctx->saved_data["sin"].toTensor(), /*backward=*/true),
            at::Tensor(), at::Tensor()};
  }
};

// 1 / √(mean(x²) + eps) per row [..., 1].
at::Tensor inverse_rms(const at::Tensor& x, double eps) {
  return at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps);
}

struct RmsNorm : torch::autograd::Function<RmsNorm> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor* weight,
                            double eps) {
    auto [y, scale] = rms_norm_rows(x, *weight, eps);
    ctx->save_for_backward({x, scale});
    ctx->saved_data["weight"] = *weight;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    // n = x·s, s = (mean(x²) + eps)^-½: dx = s·(dn − n·mean(dn·n)), dn = dy·weight.
    return {
        rms_norm_rows_backward(grads[0], saved[0], ctx->saved_data["weight"].toTensor(), saved[1]),
        at::Tensor(), at::Tensor()};
  }
};

// Whether the one-pass kernels take x (and the float32 weights beside it).
bool one_pass_applies(const at::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() == at::kFloat;
}

bool needs_graph(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c = {}) {
  return c10::GradMode::is_enabled() &&
         (a.requires_grad() || b.requires_grad() || (c.defined() && c.requires_grad()));
}

}  // namespace

at::Tensor attention_softmax(at::Tensor scores, const at::Tensor& mask, int64_t groups,
                             int64_t head_dim) {
  const int64_t b = scores.size(0), kv = scores.size(1), rows = scores.size(2),
                keys = scores.size(3);
  scores.div_(std::sqrt(static_cast<double>(head_dim)));
  if (mask.defined()) {
    scores.view({b, kv, groups, rows / groups, keys})
        .masked_fill_(mask.view({b, 1, 1, rows / groups, keys}),
                      -std::numeric_limits<float>::infinity());
  }
  return at::softmax(scores, -1);
}

at::Tensor attention_core(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& mask, int64_t groups, bool training) {
  RECORD_USER_SCOPE("vitrine::attention_core");
  if (needs_graph(q, k, v)) return AttentionCore::apply(q, k, v, &mask, groups);
  if (training) return blocked_attention(q, k, v, mask, groups);
  return at::matmul(attention_probs(q, k, mask, groups), v);
}

// The one-pass kernels (kernels/norm_rope.h) where they apply: inside
// autograd, in the module's training mode without a graph (so a layer
// recomputed under activation checkpointing computes what its forward did),
// and under c10::InferenceMode (serving: a decode step calls these three
// times a layer on one row, where each formula's five to seven libtorch
// calls cost most of the time). Evaluation under NoGradGuard keeps the
// formulas.
namespace {
bool one_pass_wanted(bool training) {
  return training || c10::InferenceMode::is_enabled();
}
}  // namespace

at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool training) {
  RECORD_USER_SCOPE("vitrine::rope");
  if (!one_pass_applies(x)) return rope_formula(x, cos, sin);
  if (c10::GradMode::is_enabled() && x.requires_grad()) return Rope::apply(x, &cos, &sin);
  return one_pass_wanted(training) ? rope_rows(x, cos, sin, /*backward=*/false)
                                   : rope_formula(x, cos, sin);
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps, bool training) {
  RECORD_USER_SCOPE("vitrine::rms_norm");
  if (!one_pass_applies(x)) return weight * (x * inverse_rms(x, eps));
  if (c10::GradMode::is_enabled() && x.requires_grad()) return RmsNorm::apply(x, &weight, eps);
  return one_pass_wanted(training) ? rms_norm_rows(x, weight, eps).first
                                   : weight * (x * inverse_rms(x, eps));
}

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  RECORD_USER_SCOPE("vitrine::swiglu");
  if (!needs_graph(gate, up)) return at::silu(gate) * up;
  return SwiGlu::apply(gate, up);
}

}  // namespace vitrine::models
