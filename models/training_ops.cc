#include "models/training_ops.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <limits>

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

struct AttentionCore : torch::autograd::Function<AttentionCore> {
  // The mask comes by pointer: it may be undefined, which autograd refuses
  // among the inputs, and it has no gradient.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const at::Tensor* mask, int64_t groups) {
    ctx->save_for_backward({q, k, v});
    ctx->saved_data["mask"] = *mask;
    ctx->saved_data["groups"] = groups;
    return at::matmul(attention_probs(q, k, *mask, groups), v);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2];
    const at::Tensor p = attention_probs(q, k, ctx->saved_data["mask"].toTensor(),
                                         ctx->saved_data["groups"].toInt());  // recomputed
    const at::Tensor& d_out = grads[0];                                       // [b, KV, g·s, d]
    const at::Tensor d_v = at::matmul(p.transpose(2, 3), d_out);              // [b, KV, keys, d]
    at::Tensor d_scores = at::matmul(d_out, v.transpose(2, 3));               // dP
    // softmax's backward, in place: P ∘ (dP − Σ dP ∘ P), then the 1/√d.
    const at::Tensor inner = (d_scores * p).sum(-1, /*keepdim=*/true);
    d_scores.sub_(inner).mul_(p).div_(std::sqrt(static_cast<double>(q.size(3))));
    return {at::matmul(d_scores, k), at::matmul(d_scores.transpose(2, 3), q), d_v, at::Tensor(),
            at::Tensor()};
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
    const at::Tensor sig = at::sigmoid(gate);
    // silu'(g) = σ(g)·(1 + g·(1 − σ(g)))
    const at::Tensor d_silu = sig * (1 + gate * (1 - sig));
    return {dy * up * d_silu, dy * gate * sig};
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
    return rope_formula(x, *cos, *sin);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& g = grads[0];
    // rotate_half is R·x with Rᵀ = −R, so the gradient of R·x·sin is −R·(g·sin).
    return {
        g * ctx->saved_data["cos"].toTensor() - rotate_half(g * ctx->saved_data["sin"].toTensor()),
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
    const at::Tensor scale = inverse_rms(x, eps);
    ctx->save_for_backward({x, scale});
    ctx->saved_data["weight"] = *weight;
    return *weight * (x * scale);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &scale = saved[1];
    // n = x·s, s = (mean(x²) + eps)^-½: dx = s·(dn − n·mean(dn·n)), dn = dy·weight.
    const at::Tensor dn = grads[0] * ctx->saved_data["weight"].toTensor();
    const at::Tensor n = x * scale;
    return {scale * (dn - n * (dn * n).mean(-1, /*keepdim=*/true)), at::Tensor(), at::Tensor()};
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
                          const at::Tensor& mask, int64_t groups) {
  if (!needs_graph(q, k, v)) return at::matmul(attention_probs(q, k, mask, groups), v);
  return AttentionCore::apply(q, k, v, &mask, groups);
}

at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (rope_rows_applies(x, cos, sin)) return rope_rows(x, cos, sin);
  if (!(c10::GradMode::is_enabled() && x.requires_grad())) return rope_formula(x, cos, sin);
  return Rope::apply(x, &cos, &sin);
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (rms_norm_rows_applies(x, weight)) return rms_norm_rows(x, weight, eps);
  if (!(c10::GradMode::is_enabled() && x.requires_grad())) {
    return weight * (x * inverse_rms(x, eps));
  }
  return RmsNorm::apply(x, &weight, eps);
}

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  if (!needs_graph(gate, up)) return at::silu(gate) * up;
  return SwiGlu::apply(gate, up);
}

}  // namespace vitrine::models
