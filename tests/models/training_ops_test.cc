// The training ops' own backward passes against autograd through the plain
// formulas they replace.
#include "models/training_ops.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>

#include "models/kernels/norm_rope.h"
#include "models/kernels/training_attention.h"
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

// attention_core against the formula on the same operands: the largest
// difference of the outputs, then of the gradients of q, k and v from dy.
std::array<double, 4> attention_against_formula(const at::Tensor& q0, const at::Tensor& k0,
                                                const at::Tensor& v0, const at::Tensor& mask,
                                                int64_t groups, const at::Tensor& dy) {
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
  return {max_abs_diff(outs[0], outs[1]), max_abs_diff(grads[0][0], grads[1][0]),
          max_abs_diff(grads[0][1], grads[1][1]), max_abs_diff(grads[0][2], grads[1][2])};
}

TEST(TrainingOps, AttentionCoreGradientsEqualAutogradsThroughTheFormula) {
  at::manual_seed(3);
  const int64_t b = 2, kv = 2, groups = 3, s = 7, d = 8;
  const at::Tensor causal = at::ones({s, s}, at::kBool).triu(1);  // true above the diagonal
  for (const bool masked : {false, true}) {
    const at::Tensor mask = masked ? causal.view({1, 1, s, s}).expand({b, 1, s, s}) : at::Tensor();
    const at::Tensor q0 = at::randn({b, kv, groups * s, d}), k0 = at::randn({b, kv, s, d}),
                     v0 = at::randn({b, kv, s, d}), dy = at::randn({b, kv, groups * s, d});
    const auto diffs = attention_against_formula(q0, k0, v0, mask, groups, dy);
    EXPECT_LT(diffs[0], 1e-6) << "masked " << masked;
    for (int j = 1; j < 4; ++j) EXPECT_LT(diffs[j], 1e-5) << "masked " << masked << " input " << j;
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
    const auto diffs = attention_against_formula(q0, k0, v0, masks[m], groups, dy);
    EXPECT_LT(diffs[0], 1e-5) << "mask " << m;
    for (int j = 1; j < 4; ++j) EXPECT_LT(diffs[j], 1e-4) << "mask " << m << " input " << j;
  }
}

// The attention kernel at the head sizes of the models trained here (64
// and 128: whole vectors in every build, several column groups of scores),
// rows that are not a whole number of blocks or of register tiles (150 =
// 64 + 64 + 22), q a transposed view of its projection, one thread and two
// (the heads split between them, dK and dV summed over each group).
TEST(TrainingOps, AttentionKernelEqualsTheFormulaAtRealHeadSizes) {
  at::manual_seed(8);
  const int64_t b = 2, kv = 2, groups = 4, s = 150;
  const at::Tensor index = at::arange(s);
  const at::Tensor causal = index.view({1, s}) > index.view({s, 1});
  const at::Tensor segment = (index >= 70).to(at::kLong);  // row 1: examples of 70 and 80
  const at::Tensor packed = causal | (segment.view({s, 1}) != segment.view({1, s}));
  const at::Tensor masks[] = {at::stack({causal, packed}).view({b, 1, s, s}), at::Tensor()};
  const int saved = at::get_num_threads();
  for (const int64_t d : {64, 128}) {
    for (const int threads : {1, 2}) {
      at::set_num_threads(threads);
      for (int m = 0; m < 2; ++m) {
        const at::Tensor q0 = at::randn({b, groups * s, kv, d}).transpose(1, 2),
                         k0 = at::randn({b, kv, s, d}),
                         v0 = at::randn({b, s, kv, d}).transpose(1, 2),
                         dy = at::randn({b, kv, groups * s, d});
        const auto diffs = attention_against_formula(q0, k0, v0, masks[m], groups, dy);
        const std::string where = "d " + std::to_string(d) + ", " + std::to_string(threads) +
                                  " threads, mask " + std::to_string(m);
        EXPECT_LT(diffs[0], 1e-5) << where;
        for (int j = 1; j < 4; ++j) EXPECT_LT(diffs[j], 1e-4) << where << ", input " << j;
      }
    }
  }
  at::set_num_threads(saved);
}

// A row that attends nothing is NaN, as softmax over −∞ makes it, and the
// rows beside it are unchanged; large scores (±80 after scaling) neither
// overflow nor lose the softmax's sum.
TEST(TrainingOps, AttentionKernelKeepsNanRowsAndLargeScores) {
  at::manual_seed(9);
  const int64_t b = 1, kv = 1, groups = 2, s = 40, d = 16;
  at::Tensor mask = (at::arange(s).view({1, s}) > at::arange(s).view({s, 1})).view({b, 1, s, s});
  mask = mask.clone();
  mask.select(2, 5).fill_(true);  // row 5 attends no key
  const at::Tensor q = at::randn({b, kv, groups * s, d}) * 9, k = at::randn({b, kv, s, d}) * 9,
                   v = at::randn({b, kv, s, d});
  const at::Tensor ours = attention_core(q, k, v, mask, groups, /*training=*/true);
  const at::Tensor expected = plain_attention(q, k, v, mask, groups);
  EXPECT_TRUE(at::equal(ours.isnan(), expected.isnan()));
  EXPECT_EQ(ours.isnan().sum().item<int64_t>(), groups * d);
  EXPECT_LT(max_abs_diff(ours.nan_to_num(0), expected.nan_to_num(0)), 1e-5);
  EXPECT_GT((q.matmul(k.transpose(2, 3)) / 4).abs().max().item<double>(), 80);
}

TEST(TrainingOps, AttentionKernelRefusesOperandsItCannotTake) {
  const at::Tensor q = at::randn({1, 2, 6, 4}), k = at::randn({1, 2, 3, 4}),
                   v = at::randn({1, 2, 3, 4});
  const std::vector<AttentionBlock> blocks = {{0, 2, 3, 3}, {2, 1, 3, 3}};
  const auto message = [&](const AttentionOperands& op) {
    try {
      training_attention_forward(op);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(training_attention_forward({q, k, v, {}, 2, blocks}).sizes(), q.sizes());
  EXPECT_NE(message({q.to(at::kDouble), k, v, {}, 2, blocks}).find("float32"), std::string::npos);
  EXPECT_NE(message({q, k.narrow(3, 0, 3), v, {}, 2, blocks}).find("[b, KV, keys, d]"),
            std::string::npos);
  EXPECT_NE(message({q, k, v, at::ones({1, 1, 3, 2}, at::kBool), 2, blocks}).find("mask"),
            std::string::npos);
  EXPECT_NE(message({q, k, v, {}, 4, blocks}).find("groups"), std::string::npos);
  EXPECT_NE(message({q, k, v, {}, 2, {{0, 2, 3, 3}}}).find("cover 2 of 3 rows"), std::string::npos);
  EXPECT_NE(message({q, k, v, {}, 2, {{0, 2, 4, 4}, {2, 1, 3, 3}}}).find("block at row 0"),
            std::string::npos);
  EXPECT_THROW(training_attention_backward({q, k, v, {}, 2, blocks}, at::randn({1, 2, 6, 3})),
               std::invalid_argument);
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

// The fused backward where σ saturates (exp over- and underflows) and
// around it, against ATen's silu_backward, in whole vectors and the tail.
TEST(TrainingOps, SwigluBackwardKernelHoldsWhereTheSigmoidSaturates) {
  const at::Tensor gate = at::tensor({-120.f, -100.f, -88.5f, -87.5f, -86.f, -30.f, -1e-3f, 0.f,
                                      1e-3f, 15.f, 30.f, 86.f, 87.5f, 88.5f, 100.f, 120.f, -5.f});
  const at::Tensor up = at::linspace(-2, 2, gate.numel()), dy = at::linspace(3, -1, gate.numel());
  const auto [d_gate, d_up] = swiglu_rows_backward(dy, gate, up);
  EXPECT_LT(max_abs_diff(d_gate, at::silu_backward(dy * up, gate)), 1e-5);
  EXPECT_LT(max_abs_diff(d_up, at::silu(gate) * dy), 1e-4);  // |g·dy| up to 360
  EXPECT_TRUE(d_gate.isfinite().all().item<bool>());
  EXPECT_THROW(swiglu_rows_backward(dy, gate, up.narrow(0, 0, 3)), std::invalid_argument);
}

// The same draws and values as libtorch's dropout, forward and backward,
// with a graph and without; p = 0 is the input itself.
TEST(TrainingOps, DropoutEqualsLibtorchsBitForBit) {
  at::manual_seed(10);
  const at::Tensor x0 = at::randn({3, 7, 37}), dy = at::randn({3, 7, 37});
  for (const double p : {0.05, 0.5}) {
    at::Tensor outs[2], grads[2];
    for (int i = 0; i < 2; ++i) {
      const at::Tensor x = x0.clone().requires_grad_();
      at::manual_seed(11);
      outs[i] = i == 0 ? dropout(x, p) : at::dropout(x, p, /*train=*/true);
      outs[i].backward(dy);
      grads[i] = x.grad();
    }
    EXPECT_TRUE(at::equal(outs[0], outs[1])) << "p " << p;
    EXPECT_TRUE(at::equal(grads[0], grads[1])) << "p " << p;
    EXPECT_GT((outs[0] == 0).sum().item<int64_t>(), 0) << "p " << p;
    at::manual_seed(12);
    const at::Tensor without_graph = dropout(x0, p);
    at::manual_seed(12);
    EXPECT_TRUE(at::equal(without_graph, at::dropout(x0, p, /*train=*/true))) << "p " << p;
  }
  EXPECT_TRUE(dropout(x0, 0).is_same(x0));
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
