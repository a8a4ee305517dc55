// Reading reference JSON and comparing tensors, for tests against fixtures.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace vitrine::testing {

inline nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

// Whether y, a vdpbf16ps kernel's x·wᵀ + bias on x rounded to bfloat16,
// equals at::linear on the rounded x within `tolerance` (float32 rounding),
// and at::linear on x itself within the rounding's bound: bfloat16's 8
// significant bits move each activation by at most 2^-8 of itself, so each
// output by at most 2^-8·Σ|w·x|.
inline bool equals_linear_on_bf16_activations(const at::Tensor& y, const at::Tensor& x,
                                              const at::Tensor& w, const at::Tensor& bias,
                                              double tolerance) {
  const at::Tensor rounded = x.to(at::kBFloat16).to(at::kFloat);
  const at::Tensor bound = at::linear(x.abs(), w.abs()) * std::ldexp(1.0, -8);
  return max_abs_diff(y, at::linear(rounded, w, bias)) < tolerance &&
         ((y - at::linear(x, w, bias)).abs() <= bound + tolerance).all().item<bool>();
}

}  // namespace vitrine::testing
