// The tiny Llama checkpoints of ../shared/fixtures/hf-llama (made with
// transformers; see docs/models.md), for tests that load them in each
// weight format.
#pragma once

#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

#include "models/llama.h"
#include "tests/support/temp_dir.h"

namespace vitrine::testing {

// An untied MHA model, a tied GQA one and one with Llama-3 RoPE scaling.
inline const std::vector<std::string> kHfLlamaFixtures = {"mha-untied", "gqa-tied", "llama3-rope"};

inline std::filesystem::path hf_llama_fixture(const std::string& name) {
  return shared_path("fixtures/hf-llama/" + name);
}

// Random token ids [batch, seq] past the special ones, from a fixed seed.
inline at::Tensor sample_ids(const models::LlamaForCausalLM& model, int64_t batch, int64_t seq) {
  at::manual_seed(7);
  return at::randint(3, model->config().vocab_size, {batch, seq}, at::kLong);
}

}  // namespace vitrine::testing

#define SKIP_WITHOUT_HF_LLAMA_FIXTURES()                                          \
  if (!std::filesystem::exists(vitrine::testing::hf_llama_fixture("mha-untied"))) \
  GTEST_SKIP() << vitrine::testing::hf_llama_fixture("mha-untied")                \
               << " not found (VITRINE_SHARED_DIR)"
