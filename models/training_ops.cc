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
#include "models/kernels/training_attention.h"

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
// with ATen's products per block (forward + backward of one layer, one
// thread, CPU time, TinyLlama's shape at 512 positions): 64 rows 64 ms,
// 128 rows 79, 256 rows 103; the forward alone 20 ms at 64 rows, 45 to 49
// unblocked.
constexpr int64_t kQueryBlock = 64;

// The blocks of s query rows over `keys` keys under mask [b, 1, s, keys]
// (true = not attended; undefined = all attended).
std::vector<AttentionBlock> query_blocks(const at::Tensor& mask, int64_t s, int64_t keys,
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
  std::vector<AttentionBlock> blocks;
  for (int64_t begin = 0; begin < s; begin += block) {
    AttentionBlock q{begin, std::min(block, s - begin), keys, keys};
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

AttentionOperands attention_operands(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const at::Tensor& mask, int64_t groups) {
  return {q, k, v, mask, groups, query_blocks(mask, q.size(2) / groups, k.size(2), kQueryBlock)};
}

struct AttentionCore : torch::autograd::Function<AttentionCore> {
  // The mask comes by pointer: it may be undefined, which autograd refuses
  // among the inputs, and it has no gradient.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const at::Tensor* mask, int64_t groups) {
    ctx->save_for_backward({q, k, v});
    ctx->saved_data["mask"] = *mask;
    ctx->saved_data["groups"] = groups;
    return training_attention_forward(attention_operands(q, k, v, *mask, groups));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const AttentionOperands op =
        attention_operands(saved[0], saved[1], saved[2], ctx->saved_data["mask"].toTensor(),
                           ctx->saved_data["groups"].toInt());
    AttentionGradients d = training_attention_backward(op, grads[0]);
    return {d.q, d.k, d.v, at::Tensor(), at::Tensor()};
  }
};

// Whether the one-pass kernels take x (and the float32 weights beside it).
bool one_pass_applies(const at::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() == at::kFloat;
}

struct Dropout : torch::autograd::Function<Dropout> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double p) {
    // at::dropout's steps on the CPU: the same draws, the same division.
    at::Tensor noise = at::empty_like(x).bernoulli_(1 - p);
    ctx->save_for_backward({noise.to(at::kBool)});
    ctx->saved_data["p"] = p;
    return x * noise.div_(1 - p);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor kept = ctx->get_saved_variables()[0];
    const double p = ctx->saved_data["p"].toDouble();
    // The noise again: 1 / (1 − p) by the forward's division, or 0.
    const at::Tensor noise = kept.to(grads[0].scalar_type()).div_(1 - p);
    return {grads[0] * noise, at::Tensor()};
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
    if (one_pass_applies(gate)) {
      auto [d_gate, d_up] = swiglu_rows_backward(dy, gate, up);
      return {d_gate, d_up};
    }
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
  if (training) return training_attention_forward(attention_operands(q, k, v, mask, groups));
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

at::Tensor dropout(const at::Tensor& x, double p) {
  if (p <= 0) return x;
  if (p >= 1 || !c10::GradMode::is_enabled() || !x.requires_grad()) {
    return at::dropout(x, p, /*train=*/true);
  }
  return Dropout::apply(x, p);
}

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  RECORD_USER_SCOPE("vitrine::swiglu");
  if (!needs_graph(gate, up)) return at::silu(gate) * up;
  return SwiGlu::apply(gate, up);
}

}  // namespace vitrine::models
