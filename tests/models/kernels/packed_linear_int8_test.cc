// The int8 panel kernels against at::linear on the dequantized weights
// (q·scale in float32): every build this CPU runs (each named by its
// Int8Path), on widths around the panel (16), the pass (512) and odd ones,
// row counts around the tiles' blocks up to a prefill's, one thread and
// two. models_kernels_without_avx512 and models_kernels_baseline run them
// again with the wider builds turned off, so kAuto takes the fallbacks.
#include "models/kernels/packed_linear_int8.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tests/support/expect_error.h"
#include "tests/support/tensors.h"

namespace vitrine::models {
namespace {

using testing::equals_linear_on_bf16_activations;
using testing::expect_throw_naming;
using testing::max_abs_diff;

constexpr Int8Path kWidenBuilds[] = {Int8Path::kWidenAvx512, Int8Path::kWidenAvx2,
                                     Int8Path::kWidenBaseline};

// The float32 kernels sum in another order than BLAS: float32 rounding of a
// sum of `length` products of magnitude ~1 (as the bf16 kernels' tests).
double tolerance_for(int64_t length) {
  return 4e-5 * std::sqrt(static_cast<double>(length) + 1);
}

TEST(PackedLinearInt8, QuantizesEachRowSymmetricallyIntoPanels) {
  at::manual_seed(21);
  at::Tensor w = at::randn({37, 13});
  w[5].zero_();  // a row of zeros keeps scale 0
  const PackedWeightInt8 q = quantize_weight_int8(w);
  ASSERT_EQ(q.panels.sizes(), (std::vector<int64_t>{3, 13, 16}));
  ASSERT_EQ(q.panels.scalar_type(), at::kChar);
  ASSERT_EQ(q.scales.numel(), 48);
  const at::Tensor top = std::get<0>(w.abs().max(1));  // [37]
  EXPECT_TRUE(at::equal(q.scales.narrow(0, 0, 37), top / 127.0f));
  EXPECT_EQ(q.scales.narrow(0, 37, 11).abs().max().item<float>(), 0.0f);
  EXPECT_EQ(q.panels[2].narrow(1, 5, 11).abs().max().item<int>(), 0);  // outputs 37..47
  // q = round(w / scale), every value within [-127, 127], the largest at ±127.
  const at::Tensor ints =
      q.panels.transpose(1, 2).reshape({48, 13}).narrow(0, 0, 37).to(at::kFloat);
  const at::Tensor scale = q.scales.narrow(0, 0, 37).view({-1, 1});
  EXPECT_TRUE(at::equal(ints, at::where(scale > 0, at::round(w / scale), at::zeros_like(w))));
  EXPECT_EQ(ints.abs().max().item<float>(), 127.0f);
  // The dequantized weight is within half a step of w.
  const at::Tensor back = dequantize_weight_int8(q);
  ASSERT_EQ(back.sizes(), w.sizes());
  EXPECT_TRUE(((back - w).abs() <= scale * 0.5f + 1e-7f).all().item<bool>());
  EXPECT_EQ(back[5].abs().max().item<float>(), 0.0f);
  // Layout: panel p, feature k, lane j holds q[16p + j][k].
  EXPECT_EQ(q.panels[1][7][4].item<int>(), static_cast<int>(ints[20][7].item<float>()));
}

TEST(PackedLinearInt8, HalvesRoundAwayFromZero) {
  // Scale 1 (the row's largest is 127): q is w rounded as std::round does.
  const std::vector<float> w = {127, 2.5f, -2.5f, 0.5f, -0.5f, 126.5f, -126.5f, 0.49999997f, 1.5f};
  const std::vector<int> expected = {127, 3, -3, 1, -1, 127, -127, 0, 2};
  const PackedWeightInt8 q =
      quantize_weight_int8(at::tensor(w).view({1, static_cast<int64_t>(w.size())}));
  ASSERT_EQ(q.scales[0].item<float>(), 1.0f);
  for (size_t k = 0; k < w.size(); ++k) {
    EXPECT_EQ(q.panels[0][static_cast<int64_t>(k)][0].item<int>(), expected[k]) << w[k];
  }
}

TEST(PackedLinearInt8, QuantizesEveryCheckpointDtypeFromItsFloatValueIntoGivenStorage) {
  at::manual_seed(22);
  for (const auto dtype : {at::kBFloat16, at::kHalf}) {
    const at::Tensor w = (at::randn({21, 9}) * 0.05).to(dtype);
    const PackedWeightInt8 q = quantize_weight_int8(w);
    const PackedWeightInt8 from_float = quantize_weight_int8(w.to(at::kFloat));
    EXPECT_TRUE(at::equal(q.panels, from_float.panels)) << c10::toString(dtype);
    EXPECT_TRUE(at::equal(q.scales, from_float.scales)) << c10::toString(dtype);
  }
  const at::Tensor panels = at::full({packed_int8_bytes(21, 9) + 5}, 7, at::kChar);
  const at::Tensor scales = at::full({packed_int8_scale_count(21) + 2}, 7.0f);
  const PackedWeightInt8 placed = quantize_weight_int8(at::randn({21, 9}), panels, scales);
  EXPECT_EQ(placed.panels.data_ptr(), panels.data_ptr());
  EXPECT_EQ(placed.scales.data_ptr(), scales.data_ptr());
  EXPECT_EQ(panels[packed_int8_bytes(21, 9)].item<int>(), 7);
  EXPECT_EQ(scales[packed_int8_scale_count(21)].item<float>(), 7.0f);

  at::Tensor bad = at::randn({4, 4});
  bad[2][3] = std::numeric_limits<float>::infinity();
  expect_throw_naming<std::invalid_argument>([&] { quantize_weight_int8(bad); }, "non-finite");
  // Read in its stored dtype: a NaN in a bf16 weight's second panel too.
  at::Tensor nan = at::randn({20, 8}).to(at::kBFloat16);
  nan[17][5] = std::numeric_limits<float>::quiet_NaN();
  expect_throw_naming<std::invalid_argument>([&] { quantize_weight_int8(nan); }, "non-finite");
  expect_throw_naming<std::invalid_argument>(
      [&] {
        quantize_weight_int8(at::randn({4, 4}).to(at::kDouble));
      },
      "Double");
}

TEST(PackedLinearInt8, WidenBuildsEqualLinearOnTheDequantizedWeights) {
  c10::InferenceMode inference;
  at::manual_seed(23);
  for (const int64_t out : {1, 16, 37, 48, 100}) {
    for (const int64_t in : {1, 13, 64, 771}) {
      const PackedWeightInt8 w = quantize_weight_int8(at::randn({out, in}));
      const at::Tensor plain = dequantize_weight_int8(w), bias = at::randn({out});
      for (const int64_t rows : {1, 2, 5, 8, 9, 23, 70}) {
        const at::Tensor x = at::randn({rows, 1, in});
        const at::Tensor expected = at::linear(x, plain, bias);
        for (const Int8Path path : kWidenBuilds) {
          if (!int8_path_available(path)) continue;
          const at::Tensor y = packed_linear_int8(x, w, bias, path);
          ASSERT_EQ(y.sizes(), expected.sizes());
          EXPECT_LT(max_abs_diff(y, expected), tolerance_for(in))
              << int8_path_name(path) << ", " << rows << " rows, " << out << " x " << in;
        }
      }
    }
  }
}

TEST(PackedLinearInt8, PrefillRowsAndModelWidths) {
  c10::InferenceMode inference;
  at::manual_seed(24);
  // 513 rows: 64 blocks of 8 and one row; a width past two passes, odd.
  const PackedWeightInt8 w = quantize_weight_int8(at::randn({100, 1031}) * 0.02);
  const at::Tensor plain = dequantize_weight_int8(w), x = at::randn({513, 1031}),
                   bias = at::randn({100});
  const at::Tensor expected = at::linear(x, plain, bias);
  for (const Int8Path path : kWidenBuilds) {
    if (!int8_path_available(path)) continue;
    EXPECT_LT(max_abs_diff(packed_linear_int8(x, w, bias, path), expected), 1e-4)
        << int8_path_name(path);
  }
  // A non-contiguous input is read by its values.
  const at::Tensor wide = at::randn({3, 2000});
  EXPECT_LT(max_abs_diff(packed_linear_int8(wide.narrow(1, 4, 1031), w),
                         at::linear(wide.narrow(1, 4, 1031), plain)),
            1e-4);
}

// The bf16-dot build: the int8 values are exact in bfloat16, so it equals
// at::linear on the activations rounded to bfloat16 within float32
// rounding, and at::linear on the float32 activations within the rounding's
// 2^-8·Σ|w·x| per output.
TEST(PackedLinearInt8, DotBuildEqualsLinearOnRoundedActivations) {
  if (!int8_path_available(Int8Path::kDotAvx512Bf16)) GTEST_SKIP() << "no AVX512_BF16 here";
  c10::InferenceMode inference;
  at::manual_seed(25);
  for (const int64_t out : {1, 37, 48, 100, 500}) {
    for (const int64_t in : {1, 13, 64, 771}) {
      const PackedWeightInt8 w = quantize_weight_int8(at::randn({out, in}));
      const at::Tensor plain = dequantize_weight_int8(w), bias = at::randn({out});
      for (const int64_t rows : {1, 8, 9, 70, 513}) {
        const at::Tensor x = at::randn({rows, in});
        const at::Tensor y = packed_linear_int8(x, w, bias, Int8Path::kDotAvx512Bf16);
        EXPECT_TRUE(equals_linear_on_bf16_activations(y, x, plain, bias, tolerance_for(in)))
            << rows << " rows, " << out << " x " << in;
      }
    }
  }
}

// The VNNI build: each row of x rounded to int16 steps of max|x| / 32767,
// then exact integer sums. So it equals at::linear on the rounded rows
// within float32 rounding, and at::linear on x itself within the rounding's
// bound, Σ_k |w[o][k]| · step / 2 per output.
TEST(PackedLinearInt8, VnniBuildEqualsLinearOnInt16Activations) {
  if (!int8_path_available(Int8Path::kVnniAvx512)) GTEST_SKIP() << "no AVX512_VNNI here";
  c10::InferenceMode inference;
  at::manual_seed(28);
  // Widths around a pair, the panel, the pass (512) and odd ones; rows
  // around the tile's 8 up to a decode batch's 15.
  for (const int64_t out : {1, 16, 37, 48, 100}) {
    for (const int64_t in : {1, 2, 13, 64, 511, 771, 1031}) {
      const PackedWeightInt8 w = quantize_weight_int8(at::randn({out, in}));
      const at::Tensor plain = dequantize_weight_int8(w), bias = at::randn({out});
      for (const int64_t rows : {1, 2, 5, 8, 9, 15}) {
        at::Tensor x = at::randn({rows, in});
        x[0][in / 2] = 40.0f;  // an outlier: a coarse step for the first row
        const at::Tensor largest = std::get<0>(x.abs().max(1, /*keepdim=*/true));  // [rows, 1]
        const at::Tensor inverse = at::where(largest > 0, 32767.0f / largest, 0.0f);
        const at::Tensor step = largest / 32767.0f;
        const at::Tensor rounded = at::round(x * inverse).clamp(-32767, 32767) * step;
        const at::Tensor y = packed_linear_int8(x, w, bias, Int8Path::kVnniAvx512);
        ASSERT_EQ(y.sizes(), (std::vector<int64_t>{rows, out}));
        EXPECT_LT(max_abs_diff(y, at::linear(rounded, plain, bias)), tolerance_for(in))
            << rows << " rows, " << out << " x " << in;
        const at::Tensor bound = plain.abs().sum(1).view({1, -1}) * step / 2 + tolerance_for(in);
        EXPECT_TRUE(((y - at::linear(x, plain, bias)).abs() <= bound).all().item<bool>())
            << rows << " rows, " << out << " x " << in;
      }
    }
  }
  // Rows of zeros (scale 0) give the bias; the most extreme int16 sums of a
  // pass (every weight ±127 against ±32767) do not overflow.
  const PackedWeightInt8 ones = quantize_weight_int8(at::ones({20, 1031}));
  const at::Tensor x = at::cat({at::zeros({1, 1031}), at::full({1, 1031}, -3.0f)});
  const at::Tensor y = packed_linear_int8(x, ones, at::full({20}, 0.5f), Int8Path::kVnniAvx512);
  EXPECT_TRUE(at::equal(y[0], at::full({20}, 0.5f)));
  EXPECT_LT((y[1] - (-3.0f * 1031 + 0.5f)).abs().max().item<float>(), 1e-2);
}

// kAuto: below kInt8DotRows rows the VNNI build, else the widest widening
// one; the dot build
// from there where the CPU has one; a build the CPU lacks (or that is
// turned off) is refused by name.
TEST(PackedLinearInt8, AutoTakesTheBuildForTheRowsAndBuildsTheCpuLacksAreRefused) {
  c10::InferenceMode inference;
  at::manual_seed(26);
  const PackedWeightInt8 w = quantize_weight_int8(at::randn({37, 29}));
  const Int8Path widen = int8_path_available(Int8Path::kWidenAvx512) ? Int8Path::kWidenAvx512
                         : int8_path_available(Int8Path::kWidenAvx2) ? Int8Path::kWidenAvx2
                                                                     : Int8Path::kWidenBaseline;
  const Int8Path dot =
      int8_path_available(Int8Path::kDotAvx512Bf16) ? Int8Path::kDotAvx512Bf16 : widen;
  const Int8Path decode =
      int8_path_available(Int8Path::kVnniAvx512) ? Int8Path::kVnniAvx512 : widen;
  for (const int64_t rows : {int64_t{1}, kInt8DotRows - 1}) {
    const at::Tensor x = at::randn({rows, 29});
    EXPECT_TRUE(at::equal(packed_linear_int8(x, w), packed_linear_int8(x, w, {}, decode))) << rows;
  }
  for (const int64_t rows : {kInt8DotRows, int64_t{100}}) {
    const at::Tensor x = at::randn({rows, 29});
    EXPECT_TRUE(at::equal(packed_linear_int8(x, w), packed_linear_int8(x, w, {}, dot))) << rows;
  }
  const at::Tensor x = at::randn({9, 29});
  for (const Int8Path path :
       {Int8Path::kDotAvx512Bf16, Int8Path::kVnniAvx512, Int8Path::kWidenAvx512,
        Int8Path::kWidenAvx2, Int8Path::kWidenBaseline}) {
    if (int8_path_available(path)) continue;
    expect_throw_naming<std::invalid_argument>([&] { packed_linear_int8(x, w, {}, path); },
                                               std::string(int8_path_name(path)));
  }
  expect_throw_naming<std::invalid_argument>(
      [&] {
        packed_linear_int8(at::randn({2, 28}), w);
      },
      "[37, 29]");
}

// Each output is one thread's, summed in one order: one thread or two give
// the same bits, in every build.
TEST(PackedLinearInt8, OneThreadAndTwoGiveTheSameBits) {
  c10::InferenceMode inference;
  at::manual_seed(27);
  const PackedWeightInt8 w = quantize_weight_int8(at::randn({1000, 300}));
  const int threads = at::get_num_threads();
  for (const int64_t rows : {1, 8, 70}) {
    const at::Tensor x = at::randn({rows, 300});
    for (const Int8Path path :
         {Int8Path::kAuto, Int8Path::kDotAvx512Bf16, Int8Path::kVnniAvx512, Int8Path::kWidenAvx512,
          Int8Path::kWidenAvx2, Int8Path::kWidenBaseline}) {
      if (!int8_path_available(path)) continue;
      at::set_num_threads(2);
      const at::Tensor two = packed_linear_int8(x, w, {}, path);
      at::set_num_threads(1);
      const at::Tensor one = packed_linear_int8(x, w, {}, path);
      EXPECT_TRUE(at::equal(one, two)) << int8_path_name(path) << ", " << rows << " rows";
    }
  }
  at::set_num_threads(threads);
}

}  // namespace
}  // namespace vitrine::models
