// The training ops' own backward passes against autograd through the plain
// formulas they replace.
#include "models/training_ops.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "models/kernels/norm_rope.h"
#include "tests/support/tensors.h"

namespace vitrine::models {
namespace {

using testing::max_abs_diff;

// The formula attention_core stands for, through autograd.
at::Tensor plain_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& mask, int64_t groups) {
  const int64_t b = q.size(0), kv = q.size(1), rows = q.size(2), keys = k.size(2);
  at::Tensor scores = at::matmul(q, k.transpose(2, 3)) / std::sqrt(static_cast<double>(q.size(3)));
  if (mask.defined()) {
    scores = scores.view({b, kv, groups, rows / groups, keys})
                 .masked_fill(mask.view({b, 1, 1, rows / groups, keys}),
                              -std::numeric_limits<float>::infinity())
                 .view({b, kv, rows, keys});
  }
  return at::matmul(at::softmax(scores, -1), v);
}

TEST(TrainingOps, AttentionCoreGradientsEqualAutogradsThroughTheFormula) {
  at::manual_seed(3);
  const int64_t b = 2, kv = 2, groups = 3, s = 7, d = 8;
  const at::Tensor causal = at::ones({s, s}, at::kBool).triu(1);  // true above the diagonal
  for (const bool masked : {false, true}) {
    const at::Tensor mask = masked ? causal.view({1, 1, s, s}).expand({b, 1, s, s}) : at::Tensor();
    const at::Tensor q0 = at::randn({b, kv, groups * s, d}), k0 = at::randn({b, kv, s, d}),
                     v0 = at::randn({b, kv, s, d}), dy = at::randn({b, kv, groups * s, d});
    std::vector<at::Tensor> grads[2];
    at::Tensor outs[2];
    for (int i = 0; i < 2; ++i) {
      const at::Tensor q = q0.clone().requires_grad_(), k = k0.clone().requires_grad_(),
                       v = v0.clone().requires_grad_();
      outs[i] =
          i == 0 ? attention_core(q, k, v, mask, groups) : plain_attention(q, k, v, mask, groups);
      outs[i].backward(dy);
      grads[i] = {q.grad(), k.grad(), v.grad()};
    }
    EXPECT_LT(max_abs_diff(outs[0], outs[1]), 1e-6) << "masked " << masked;
    for (int j = 0; j < 3; ++j) {
      EXPECT_LT(max_abs_diff(grads[0][j], grads[1][j]), 1e-5)
          << "masked " << masked << " input " << j;
    }
  }
}

// Several query blocks (300 rows: two full blocks and a partial one), v a
// transposed view of its projection as the layer passes it, under
// a causal mask, under packed examples with a sliding window (blocks that
// attend a part of the keys and need masking left of the diagonal), and
// without a mask.
TEST(TrainingOps, BlockedAttentionEqualsAutogradsThroughTheFormulaOnLongSequences) {
  at::manual_seed(6);
  const int64_t b = 2, kv = 2, groups = 2, s = 300, d = 6;
  const at::Tensor index = at::arange(s);
  const at::Tensor causal = index.view({1, s}) > index.view({s, 1});  // [s, s]
  // Row 0: examples of 100, 150 and 50 tokens; row 1: one of 300 with a window of 140.
  const at::Tensor segment0 = (index >= 100).to(at::kLong) + (index >= 250).to(at::kLong);
  const at::Tensor packed0 = causal | (segment0.view({s, 1}) != segment0.view({1, s}));
  const at::Tensor window1 = causal | (index.view({1, s}) <= index.view({s, 1}) - 140);
  const at::Tensor masks[] = {causal.view({1, 1, s, s}).expand({b, 1, s, s}),
                              at::stack({packed0, window1}).view({b, 1, s, s}), at::Tensor()};
  for (int m = 0; m < 3; ++m) {
    const at::Tensor q0 = at::randn({b, kv, groups * s, d}), k0 = at::randn({b, kv, s, d}),
                     v0 = at::randn({b, s, kv, d}).transpose(1, 2),
                     dy = at::randn({b, kv, groups * s, d});
    std::vector<at::Tensor> grads[2];
    at::Tensor outs[2];
    for (int i = 0; i < 2; ++i) {
      const at::Tensor q = q0.clone().requires_grad_(), k = k0.clone().requires_grad_(),
                       v = v0.clone().requires_grad_();
      outs[i] = i == 0 ? attention_core(q, k, v, masks[m], groups)
                       : plain_attention(q, k, v, masks[m], groups);
      outs[i].backward(dy);
      grads[i] = {q.grad(), k.grad(), v.grad()};
    }
    EXPECT_LT(max_abs_diff(outs[0], outs[1]), 1e-5) << "mask " << m;
    for (int j = 0; j < 3; ++j) {
      EXPECT_LT(max_abs_diff(grads[0][j], grads[1][j]), 1e-4) << "mask " << m << " input " << j;
    }
  }
}

TEST(TrainingOps, SwigluGradientsEqualAutogradsThroughTheFormula) {
  at::manual_seed(4);
  const at::Tensor g0 = at::randn({3, 5, 11}) * 3, u0 = at::randn({3, 5, 11}),
                   dy = at::randn({3, 5, 11});
  std::vector<at::Tensor> grads[2];
  at::Tensor outs[2];
  for (int i = 0; i < 2; ++i) {
    const at::Tensor g = g0.clone().requires_grad_(), u = u0.clone().requires_grad_();
    outs[i] = i == 0 ? swiglu(g, u) : at::silu(g) * u;
    outs[i].backward(dy);
    grads[i] = {g.grad(), u.grad()};
  }
  EXPECT_TRUE(at::equal(outs[0], outs[1]));
  EXPECT_LT(max_abs_diff(grads[0][0], grads[1][0]), 1e-5);
  EXPECT_LT(max_abs_diff(grads[0][1], grads[1][1]), 1e-6);
}

TEST(TrainingOps, RopeAndRmsNormGradientsEqualAutogradsThroughTheFormulas) {
  at::manual_seed(5);
  const at::Tensor x0 = at::randn({2, 3, 5, 8}), dy = at::randn({2, 3, 5, 8});
  const at::Tensor angles = at::randn({2, 1, 5, 4});
  const at::Tensor cos = at::cat({angles, angles}, -1).cos(),
                   sin = at::cat({angles, angles}, -1).sin();
  auto rotate_half = [](const at::Tensor& x) {
    return at::cat({-x.narrow(-1, 4, 4), x.narrow(-1, 0, 4)}, -1);
  };
  const at::Tensor weight = at::randn({8});
  for (int op = 0; op < 2; ++op) {
    std::vector<at::Tensor> grads, outs;
    for (int i = 0; i < 2; ++i) {
      const at::Tensor x = x0.clone().requires_grad_();
      at::Tensor y;
      if (op == 0) {
        y = i == 0 ? rope(x, cos, sin) : x * cos + rotate_half(x) * sin;
      } else {
        y = i == 0 ? rms_norm(x, weight, 1e-5)
                   : weight * (x * at::rsqrt(x.pow(2).mean(-1, true) + 1e-5));
      }
      y.backward(dy);
      outs.push_back(y.detach());
      grads.push_back(x.grad());
    }
    EXPECT_LT(max_abs_diff(outs[0], outs[1]), 1e-6) << "op " << op;
    EXPECT_LT(max_abs_diff(grads[0], grads[1]), 1e-5) << "op " << op;
  }
}

// The one-pass kernels on shapes their vector loops do not divide: rows of
// 13 (norm) and 10 (RoPE) values, RoPE on a transposed view of the
// projections (as the attention passes it), one thread and two.
TEST(TrainingOps, NormAndRopeKernelsOnOddShapesEqualTheFormulas) {
  at::manual_seed(7);
  const int64_t b = 2, t = 9, heads = 3, d = 10, n = 13;
  const at::Tensor angles = at::randn({b, 1, t, d / 2});
  const at::Tensor cos = at::cat({angles, angles}, -1).cos(),
                   sin = at::cat({angles, angles}, -1).sin();
  auto rotate_half = [](const at::Tensor& x) {
    const int64_t half = x.size(-1) / 2;
    return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  };
  const at::Tensor weight = at::randn({n});
  const int saved = at::get_num_threads();
  for (const int threads : {1, 2}) {
    at::set_num_threads(threads);
    // [b, t, heads·d] projections viewed as [b, heads, t, d].
    const at::Tensor x0 = at::randn({b, t, heads * d}), dy = at::randn({b, heads, t, d});
    const at::Tensor x = x0.view({b, t, heads, d}).transpose(1, 2);
    EXPECT_LT(max_abs_diff(rope_rows(x, cos, sin, false), x * cos + rotate_half(x) * sin), 1e-6);
    EXPECT_LT(max_abs_diff(rope_rows(dy, cos, sin, true), dy * cos - rotate_half(dy * sin)), 1e-6);
    const at::Tensor h0 = at::randn({b, t, n}) * 3, dh = at::randn({b, t, n});
    const at::Tensor h = h0.clone().requires_grad_();
    const at::Tensor y = weight * (h * at::rsqrt(h.pow(2).mean(-1, true) + 1e-5));
    y.backward(dh);
    const auto [y_rows, scale] = rms_norm_rows(h0, weight, 1e-5);
    EXPECT_LT(max_abs_diff(y_rows, y.detach()), 1e-5);
    EXPECT_LT(max_abs_diff(rms_norm_rows_backward(dh, h0, weight, scale), h.grad()), 1e-5);
  }
  at::set_num_threads(saved);
}

}  // namespace
}  // namespace vitrine::models
