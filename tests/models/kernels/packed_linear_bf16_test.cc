// The bfloat16 panel kernels against at::linear / at::matmul on the float32
// values of the bf16 weights: every build this CPU runs (each named by its
// Bf16Path), on widths around the panel (16), the pair (odd in) and the
// pass (512), row counts around the tiles' blocks up to a prefill's.
// models_kernels_without_avx512 and models_kernels_baseline run them again
// with the wider builds turned off, so kExact takes the fallbacks too.
#include "models/kernels/packed_linear_bf16.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "models/kernels/packed_linear.h"
#include "tests/support/expect_error.h"
#include "tests/support/tensors.h"

namespace vitrine::models {
namespace {

using testing::equals_linear_on_bf16_activations;
using testing::expect_throw_naming;
using testing::max_abs_diff;

constexpr Bf16Path kWidenBuilds[] = {Bf16Path::kExact, Bf16Path::kWidenAvx512, Bf16Path::kWidenAvx2,
                                     Bf16Path::kWidenBaseline};

uint16_t bits_of(float f) {
  return bf16_from_float(f);
}
float from_bits(uint32_t u) {
  float f = 0;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The float32 values a packed weight multiplies by: [out, in].
at::Tensor widened(const PackedWeightBf16& w) {
  return unpack_weight_bf16(w).to(at::kFloat);
}

// Long sums round differently from BLAS; compare relative to their length.
double tolerance_for(int64_t length) {
  return 4e-5 * std::sqrt(static_cast<double>(length) + 1);
}

TEST(Bf16Rounding, NearestTiesToEvenInfinitiesAndNan) {
  EXPECT_EQ(bits_of(1.0f), 0x3f80);
  EXPECT_EQ(bits_of(from_bits(0x3f807fff)), 0x3f80);  // below half: down
  EXPECT_EQ(bits_of(from_bits(0x3f808001)), 0x3f81);  // above half: up
  EXPECT_EQ(bits_of(from_bits(0x3f808000)), 0x3f80);  // tie, even below: down
  EXPECT_EQ(bits_of(from_bits(0x3f818000)), 0x3f82);  // tie, odd below: up to even
  EXPECT_EQ(bits_of(from_bits(0xbf818000)), 0xbf82);  // the same on negatives
  EXPECT_EQ(bits_of(from_bits(0x00018000)), 0x0002);  // subnormals round too, not flushed
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(bits_of(inf), 0x7f80);
  EXPECT_EQ(bits_of(-inf), 0xff80);
  EXPECT_EQ(bits_of(std::numeric_limits<float>::max()), 0x7f80);  // past the largest bf16
  EXPECT_EQ(bits_of(from_bits(0x7f7f7fff)), 0x7f7f);              // the largest bf16 itself
  // NaN stays NaN, even one whose payload is only in the low half (which
  // plain truncation or rounding would turn into Inf), and keeps its sign.
  for (const uint32_t nan : {0x7fc00000u, 0x7f800001u, 0x7fffffffu, 0xff800001u}) {
    const float back = float_from_bf16(bits_of(from_bits(nan)));
    EXPECT_TRUE(std::isnan(back)) << std::hex << nan;
    EXPECT_EQ(std::signbit(back), (nan >> 31) != 0) << std::hex << nan;
  }
  EXPECT_EQ(float_from_bf16(0x3f80), 1.0f);
  EXPECT_EQ(float_from_bf16(0xc040), -3.0f);
}

TEST(Bf16Rounding, AgreesWithTorchOnEveryFiniteValue) {
  at::manual_seed(5);
  // Values over the whole exponent range, subnormals included, and exact
  // ties (the low 16 bits 0x8000) below both even and odd halves.
  const at::Tensor wide = at::randn({20000}) * at::pow(2.0, at::randint(-140, 120, {20000}));
  const at::Tensor ties = at::randint(0, 128, {2000}) * 65536.0 + (8388608.0 + 32768.0);
  for (const at::Tensor& values : {wide, ties}) {
    const at::Tensor f = values.to(at::kFloat).contiguous();
    at::Tensor ours = at::empty({f.numel()}, at::kShort);
    for (int64_t i = 0; i < f.numel(); ++i) {
      ours.data_ptr<int16_t>()[i] = static_cast<int16_t>(bits_of(f.data_ptr<float>()[i]));
    }
    EXPECT_TRUE(at::equal(ours, f.to(at::kBFloat16).view(at::kShort)));
  }
}

TEST(PackedLinearBf16, PacksAndUnpacksBitForBit) {
  at::manual_seed(6);
  const at::Tensor f32 = at::randn({21, 9});
  // From float32: rounded as torch rounds (nearest, ties to even).
  const PackedWeightBf16 w = pack_weight_bf16(f32);
  EXPECT_EQ(w.pairs.sizes(), (std::vector<int64_t>{2, 5, 16, 2}));
  EXPECT_EQ(w.pairs.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(
      at::equal(unpack_weight_bf16(w).view(at::kShort), f32.to(at::kBFloat16).view(at::kShort)));
  // From bfloat16: bit for bit, into given storage, padding zero, the rest untouched.
  const at::Tensor bf16 = at::randn({37, 13}).to(at::kBFloat16);
  const at::Tensor arena = at::full({packed_bf16_numel(37, 13) + 3}, 7.0, at::kBFloat16);
  const PackedWeightBf16 stored = pack_weight_bf16(bf16, arena);
  EXPECT_EQ(stored.pairs.data_ptr(), arena.data_ptr());
  EXPECT_TRUE(at::equal(unpack_weight_bf16(stored).view(at::kShort), bf16.view(at::kShort)));
  EXPECT_EQ(stored.pairs[2].narrow(1, 5, 11).abs().max().item<float>(), 0.0f);  // outputs 37..47
  EXPECT_EQ(stored.pairs.select(3, 1).select(1, 6).abs().max().item<float>(), 0.0f);  // input 13
  EXPECT_EQ(arena[packed_bf16_numel(37, 13)].item<float>(), 7.0f);
  // From float16: its float32 value, rounded.
  const at::Tensor f16 = at::randn({5, 3}).to(at::kHalf);
  EXPECT_TRUE(at::equal(unpack_weight_bf16(pack_weight_bf16(f16)).view(at::kShort),
                        f16.to(at::kFloat).to(at::kBFloat16).view(at::kShort)));
  // Layout: line (p, k2) holds W[16p + j][2·k2 + h] at [j][h].
  EXPECT_EQ(stored.pairs[1][3][4][1].item<float>(), bf16[20][7].item<float>());
}

TEST(PackedLinearBf16, ExactBuildsEqualLinearOnTheWidenedWeights) {
  c10::InferenceMode inference;
  at::manual_seed(7);
  for (const int64_t out : {1, 16, 37, 48, 100}) {
    for (const int64_t in : {1, 13, 64, 771}) {
      const PackedWeightBf16 w = pack_weight_bf16(at::randn({out, in}));
      const at::Tensor plain = widened(w), bias = at::randn({out});
      for (const int64_t rows : {1, 2, 5, 8, 9, 23, 70}) {
        const at::Tensor x = at::randn({rows, 1, in});
        const at::Tensor expected = at::linear(x, plain, bias);
        for (const Bf16Path path : kWidenBuilds) {
          if (!bf16_path_available(path)) continue;
          EXPECT_LT(max_abs_diff(packed_linear_bf16(x, w, bias, path), expected), tolerance_for(in))
              << bf16_path_name(path) << ", " << rows << " rows, " << out << " x " << in;
        }
        // The same arithmetic as the float32 kernel on the widened weights, bit for bit.
        EXPECT_TRUE(at::equal(packed_linear_bf16(x, w), packed_linear(x, pack_weight(plain))))
            << rows << " rows, " << out << " x " << in;
      }
    }
  }
}

TEST(PackedLinearBf16, PrefillRowsAndModelWidths) {
  c10::InferenceMode inference;
  at::manual_seed(8);
  // 513 rows: 64 blocks of 8 and one row; a width past two passes, odd.
  const PackedWeightBf16 w = pack_weight_bf16(at::randn({100, 1031}) * 0.02);
  const at::Tensor plain = widened(w), x = at::randn({513, 1031}), bias = at::randn({100});
  const at::Tensor expected = at::linear(x, plain, bias);
  for (const Bf16Path path : kWidenBuilds) {
    if (!bf16_path_available(path)) continue;
    EXPECT_LT(max_abs_diff(packed_linear_bf16(x, w, bias, path), expected), 1e-4)
        << bf16_path_name(path);
  }
  // A non-contiguous input is read by its values.
  const at::Tensor wide = at::randn({3, 2000});
  EXPECT_LT(max_abs_diff(packed_linear_bf16(wide.narrow(1, 4, 1031), w),
                         at::linear(wide.narrow(1, 4, 1031), plain)),
            1e-4);
}

// vdpbf16ps on activations rounded to bfloat16: equal to at::linear on the
// rounded activations within float32 rounding, and within its documented
// error of at::linear on the float32 activations.
TEST(PackedLinearBf16, DotBuildEqualsLinearOnRoundedActivations) {
  if (!bf16_path_available(Bf16Path::kDotAvx512Bf16)) GTEST_SKIP() << "no AVX512_BF16 here";
  c10::InferenceMode inference;
  at::manual_seed(9);
  for (const int64_t out : {1, 37, 48, 100}) {
    for (const int64_t in : {1, 13, 64, 771}) {
      const PackedWeightBf16 w = pack_weight_bf16(at::randn({out, in}));
      const at::Tensor plain = widened(w), bias = at::randn({out});
      for (const int64_t rows : {1, 8, 9, 70, 513}) {
        const at::Tensor x = at::randn({rows, in});
        const at::Tensor y = packed_linear_bf16(x, w, bias, Bf16Path::kDotAvx512Bf16);
        EXPECT_TRUE(equals_linear_on_bf16_activations(y, x, plain, bias, tolerance_for(in)))
            << rows << " rows, " << out << " x " << in;
      }
    }
  }
}

// kFast is the vdpbf16ps build where the CPU has one, kExact elsewhere; a
// single build the CPU lacks (or that is turned off) is refused by name.
TEST(PackedLinearBf16, FastIsTheDotBuildWhereThereIsOneAndBuildsTheCpuLacksAreRefused) {
  c10::InferenceMode inference;
  at::manual_seed(11);
  const PackedWeightBf16 w = pack_weight_bf16(at::randn({37, 29}));
  const at::Tensor x = at::randn({9, 29});
  const Bf16Path fast =
      bf16_path_available(Bf16Path::kDotAvx512Bf16) ? Bf16Path::kDotAvx512Bf16 : Bf16Path::kExact;
  EXPECT_TRUE(
      at::equal(packed_linear_bf16(x, w, {}, Bf16Path::kFast), packed_linear_bf16(x, w, {}, fast)));
  for (const Bf16Path path : {Bf16Path::kDotAvx512Bf16, Bf16Path::kWidenAvx512,
                              Bf16Path::kWidenAvx2, Bf16Path::kWidenBaseline}) {
    if (bf16_path_available(path)) continue;
    expect_throw_naming<std::invalid_argument>([&] { packed_linear_bf16(x, w, {}, path); },
                                               std::string(bf16_path_name(path)));
  }
}

TEST(PackedLinearBf16, BackwardDataEqualsMatmulOnTheWidenedWeights) {
  c10::InferenceMode inference;
  at::manual_seed(10);
  const Bf16Path builds[] = {Bf16Path::kExact, Bf16Path::kWidenAvx512, Bf16Path::kWidenAvx2,
                             Bf16Path::kWidenBaseline};
  for (const int64_t out : {1, 16, 37, 48, 100, 1030}) {
    for (const int64_t in : {1, 2, 13, 64, 771}) {
      const PackedWeightBf16 w = pack_weight_bf16(at::randn({out, in}));
      const at::Tensor plain = widened(w);
      for (const int64_t rows : {1, 3, 4, 8, 9, 70, 513}) {
        if (rows == 513 && out * in > 100 * 771) continue;  // enough for the reference
        const at::Tensor dy = at::randn({rows, 1, out});
        const at::Tensor expected = at::matmul(dy, plain);  // [rows, 1, in]
        for (const Bf16Path path : builds) {
          if (!bf16_path_available(path)) continue;
          const at::Tensor dx = packed_linear_bf16_backward_data(dy, w, path);
          ASSERT_EQ(dx.sizes(), expected.sizes());
          EXPECT_LT(max_abs_diff(dx, expected), tolerance_for(out))
              << bf16_path_name(path) << ", " << rows << " rows, " << out << " x " << in;
        }
      }
    }
  }
}

// Backward-data with vdpbf16ps on dY rounded to bfloat16: equal to matmul
// on the rounded dY within float32 rounding (the weights turned into pairs
// of outputs block by block lose nothing), within 2^-8·Σ|dy·w| of the
// exact product, and kFast is this build where the CPU has it.
TEST(PackedLinearBf16, BackwardDotBuildEqualsMatmulOnRoundedGradients) {
  if (!bf16_path_available(Bf16Path::kDotAvx512Bf16)) GTEST_SKIP() << "no AVX512_BF16 here";
  c10::InferenceMode inference;
  at::manual_seed(12);
  for (const int64_t out : {1, 16, 37, 48, 100, 1030}) {
    for (const int64_t in : {1, 2, 13, 16, 64, 771}) {
      const PackedWeightBf16 w = pack_weight_bf16(at::randn({out, in}));
      const at::Tensor plain = widened(w);
      for (const int64_t rows : {1, 8, 9, 70, 513}) {
        if (rows == 513 && out * in > 100 * 771) continue;
        const at::Tensor dy = at::randn({rows, 1, out});
        const at::Tensor rounded = dy.to(at::kBFloat16).to(at::kFloat);
        const at::Tensor dx = packed_linear_bf16_backward_data(dy, w, Bf16Path::kDotAvx512Bf16);
        ASSERT_EQ(dx.sizes(), (std::vector<int64_t>{rows, 1, in}));
        EXPECT_LT(max_abs_diff(dx, at::matmul(rounded, plain)), tolerance_for(out))
            << rows << " rows, " << out << " x " << in;
        const at::Tensor bound = at::matmul(dy.abs(), plain.abs()) * std::ldexp(1.0, -8);
        EXPECT_TRUE(
            ((dx - at::matmul(dy, plain)).abs() <= bound + tolerance_for(out)).all().item<bool>())
            << rows << " rows, " << out << " x " << in;
        if (rows == 9) {
          EXPECT_TRUE(at::equal(dx, packed_linear_bf16_backward_data(dy, w, Bf16Path::kFast)));
        }
      }
    }
  }
}

TEST(PackedLinearBf16, EmptySumsAndRefusals) {
  // No input features: every output is its bias; no outputs: every dX is 0.
  const PackedWeightBf16 none_in = pack_weight_bf16(at::randn({5, 0}));
  const at::Tensor bias = at::randn({5});
  EXPECT_TRUE(at::equal(packed_linear_bf16(at::randn({3, 0}), none_in, bias), bias.expand({3, 5})));
  const PackedWeightBf16 none_out = pack_weight_bf16(at::randn({0, 6}));
  EXPECT_TRUE(
      at::equal(packed_linear_bf16_backward_data(at::randn({2, 0}), none_out), at::zeros({2, 6})));
  EXPECT_THROW(pack_weight_bf16(at::randn({4, 8}, at::kDouble)), std::invalid_argument);
  EXPECT_THROW(pack_weight_bf16(at::randn({4, 8}), at::empty({10}, at::kBFloat16)),
               std::invalid_argument);
  const PackedWeightBf16 w = pack_weight_bf16(at::randn({4, 8}));
  expect_throw_naming<std::invalid_argument>(
      [&] {
        packed_linear_bf16(at::randn({2, 7}), w);
      },
      "input [2, 7]");
  expect_throw_naming<std::invalid_argument>(
      [&] {
        packed_linear_bf16_backward_data(at::randn({2, 8}), w);
      },
      "dY [2, 8]");
  expect_throw_naming<std::invalid_argument>(
      [&] {
        packed_linear_bf16(at::randn({2, 8}), w, at::randn({3}));
      },
      "bias [3]");
  if (!bf16_path_available(Bf16Path::kDotAvx512Bf16)) {
    expect_throw_naming<std::invalid_argument>(
        [&] {
          packed_linear_bf16_backward_data(at::randn({2, 4}), w, Bf16Path::kDotAvx512Bf16);
        },
        "dot-avx512bf16");
  }
}

}  // namespace
}  // namespace vitrine::models
