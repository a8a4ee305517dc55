// Names for test suites run over (fixture folder, WeightLayout) pairs:
// "gqa-tied" in the checkpoint layout is "gqa_tied", packed "gqa_tied_packed".
#pragma once

#include <algorithm>
#include <string>
#include <tuple>

#include "models/llama.h"

namespace vitrine::testing {

inline std::string layout_param_name(const std::tuple<std::string, models::WeightLayout>& param) {
  std::string name = std::get<0>(param);
  std::replace(name.begin(), name.end(), '-', '_');  // gtest names are identifiers
  return name + (std::get<1>(param) == models::WeightLayout::kPacked ? "_packed" : "");
}

}  // namespace vitrine::testing
