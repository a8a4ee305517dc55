// RMSNorm and RoPE in serving: under c10::InferenceMode training_ops takes
// the one-pass kernels (kernels/norm_rope.h; their forward and backward
// against autograd are TrainingOps.*), equal to the formulas in libtorch
// calls (transformers') within float32 rounding on row widths around the
// 8-float vector and odd ones, contiguous and strided inputs; evaluation
// under NoGradGuard keeps the formulas. models_kernels_baseline runs them
// again in the SSE build.
#include "models/kernels/norm_rope.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include "models/training_ops.h"
#include "tests/support/tensors.h"

namespace vitrine::models {
namespace {

using testing::max_abs_diff;

at::Tensor rms_norm_formula(const at::Tensor& x, const at::Tensor& w, double eps) {
  return w * (x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps));
}

at::Tensor rope_formula(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

TEST(NormRope, InferenceRmsNormIsTheOnePassKernelAndEqualsTheFormula) {
  c10::InferenceMode inference;
  at::manual_seed(31);
  for (const int64_t d : {1, 7, 8, 64, 771, 2048}) {
    const at::Tensor w = at::randn({d});
    for (const int64_t rows : {1, 3, 17}) {
      const at::Tensor x = at::randn({rows, 1, d}) * 3;
      const at::Tensor y = rms_norm(x, w, 1e-6);
      ASSERT_EQ(y.sizes(), x.sizes());
      EXPECT_TRUE(at::equal(y, rms_norm_rows(x, w, 1e-6).first)) << rows << " x " << d;
      EXPECT_LT(max_abs_diff(y, rms_norm_formula(x, w, 1e-6)), 2e-5) << rows << " x " << d;
    }
  }
  // A strided input is read by its values; a row of zeros gives zeros.
  const at::Tensor w = at::randn({40});
  at::Tensor wide = at::randn({5, 90});
  wide[2].zero_();
  const at::Tensor x = wide.narrow(1, 3, 40);
  EXPECT_LT(max_abs_diff(rms_norm(x, w, 1e-5), rms_norm_formula(x, w, 1e-5)), 2e-5);
  EXPECT_EQ(rms_norm(x, w, 1e-5)[2].abs().max().item<float>(), 0.0f);
}

TEST(NormRope, InferenceRopeIsTheOnePassKernelAndEqualsTheFormula) {
  c10::InferenceMode inference;
  at::manual_seed(32);
  for (const int64_t d : {2, 8, 16, 64, 74}) {
    for (const int64_t s : {1, 5}) {
      const int64_t b = 2, h = 3;
      const at::Tensor angles = at::randn({b, s, d}) * 10;  // [b, s, d]
      const at::Tensor cos = angles.cos().unsqueeze(1), sin = angles.sin().unsqueeze(1);
      // As attention has it: [b, s, h, d] viewed as [b, h, s, d].
      const at::Tensor x = at::randn({b, s, h, d}).transpose(1, 2);
      const at::Tensor y = rope(x, cos, sin);
      ASSERT_EQ(y.sizes(), x.sizes());
      EXPECT_TRUE(y.is_contiguous());
      EXPECT_TRUE(at::equal(y, rope_rows(x, cos, sin, /*backward=*/false)));
      EXPECT_LT(max_abs_diff(y, rope_formula(x, cos, sin)), 1e-5) << "s " << s << ", d " << d;
    }
  }
}

// Evaluation (NoGradGuard, not training) keeps the formulas exactly; with a
// graph, the norm's own backward runs.
TEST(NormRope, EvaluationKeepsTheFormulas) {
  at::manual_seed(33);
  const at::Tensor w = at::randn({72}), x = at::randn({4, 72}) * 2;
  const at::Tensor angles = at::randn({1, 1, 3, 8});
  const at::Tensor q = at::randn({1, 2, 3, 8});
  {
    at::NoGradGuard no_grad;
    EXPECT_TRUE(
        at::equal(rms_norm(x, w, 1e-6), w * (x * at::rsqrt(x.pow(2).mean(-1, true) + 1e-6))));
    EXPECT_TRUE(at::equal(rope(q, angles.cos(), angles.sin()),
                          rope_formula(q, angles.cos(), angles.sin())));
  }
  const at::Tensor leaf = x.clone().requires_grad_();
  const at::Tensor y = rms_norm(leaf, w, 1e-6);
  ASSERT_TRUE(y.requires_grad());
  y.sum().backward();
  EXPECT_TRUE(leaf.grad().defined());
}

}  // namespace
}  // namespace vitrine::models
