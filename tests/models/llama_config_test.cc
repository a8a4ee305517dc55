// Tests for models/llama_config: the fixture configs against the summaries in
// their expected.json, Mistral and Qwen2 configs, refusals, and RoPE inverse
// frequencies against references computed here in double precision.
#include "models/llama_config.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

#include "tests/support/expect_error.h"
#include "tests/support/temp_dir.h"

namespace vitrine::models {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using vitrine::testing::expect_error;
using vitrine::testing::read_file;
using vitrine::testing::shared_path;
using vitrine::testing::TempDir;
using vitrine::testing::write_file;

// A small valid Llama config to mutate.
json llama_json() {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"vocab_size", 1000},
              {"hidden_size", 64},
              {"intermediate_size", 128},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 4},
              {"hidden_act", "silu"}};
}

#define SKIP_WITHOUT_SHARED()                                                           \
  if (!fs::exists(shared_path("fixtures/hf-llama"))) {                                  \
    GTEST_SKIP() << "shared fixtures not found at " << shared_path("fixtures/hf-llama") \
                 << " (VITRINE_SHARED_DIR); skipping";                                  \
  }

TEST(LlamaConfigTest, ParsesEveryFixtureConfigLikeItsExpectedSummary) {
  SKIP_WITHOUT_SHARED();
  for (const char* name : {"mha-untied", "gqa-tied", "llama3-rope"}) {
    SCOPED_TRACE(name);
    const fs::path dir = shared_path("fixtures/hf-llama") / name;
    const LlamaConfig c = load_llama_config(dir);
    const json want = json::parse(read_file(dir / "expected.json")).at("config");
    EXPECT_EQ(c.architecture, "LlamaForCausalLM");
    EXPECT_EQ(c.source, (dir / "config.json").string());
    EXPECT_EQ(c.vocab_size, want.at("vocab_size").get<int64_t>());
    EXPECT_EQ(c.hidden_size, want.at("hidden_size").get<int64_t>());
    EXPECT_EQ(c.intermediate_size, want.at("intermediate_size").get<int64_t>());
    EXPECT_EQ(c.num_hidden_layers, want.at("num_hidden_layers").get<int64_t>());
    EXPECT_EQ(c.num_attention_heads, want.at("num_attention_heads").get<int64_t>());
    EXPECT_EQ(c.num_key_value_heads, want.at("num_key_value_heads").get<int64_t>());
    EXPECT_EQ(c.head_dim, want.at("head_dim").get<int64_t>());
    EXPECT_EQ(c.rms_norm_eps, want.at("rms_norm_eps").get<double>());
    EXPECT_EQ(c.rope_theta, want.at("rope_theta").get<double>());
    EXPECT_EQ(c.max_position_embeddings, want.at("max_position_embeddings").get<int64_t>());
    EXPECT_EQ(c.tie_word_embeddings, want.at("tie_word_embeddings").get<bool>());
    const json& rs = want.at("rope_scaling");
    if (rs.is_null()) {
      EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
    } else {
      EXPECT_EQ(rope_scaling_type_name(c.rope_scaling.type), rs.at("rope_type").get<std::string>());
      EXPECT_EQ(c.rope_scaling.factor, rs.at("factor").get<double>());
      EXPECT_EQ(c.rope_scaling.low_freq_factor, rs.at("low_freq_factor").get<double>());
      EXPECT_EQ(c.rope_scaling.high_freq_factor, rs.at("high_freq_factor").get<double>());
      EXPECT_EQ(c.rope_scaling.original_max_position_embeddings,
                rs.at("original_max_position_embeddings").get<int64_t>());
    }
    EXPECT_EQ(c.bos_token_id, 1);
    EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
    EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias);
    EXPECT_EQ(c.n_kv_groups() * c.num_key_value_heads, c.num_attention_heads);
  }
}

TEST(LlamaConfigTest, ParsesStories260K) {
  if (!fs::exists(shared_path("models/stories260K-hf/config.json"))) {
    GTEST_SKIP() << "stories260K-hf not found under " << shared_path("models");
  }
  const LlamaConfig c = load_llama_config(shared_path("models/stories260K-hf/config.json"));
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_hidden_layers, 5);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
}

TEST(LlamaConfigTest, DefaultsFollowTransformers) {
  const LlamaConfig c = parse_llama_config(llama_json().dump());
  EXPECT_EQ(c.num_key_value_heads, 4);  // = heads
  EXPECT_EQ(c.head_dim, 16);            // hidden / heads
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});

  json j = llama_json();
  j["head_dim"] = 32;  // Llama honours an explicit head_dim
  j["num_key_value_heads"] = nullptr;
  j["eos_token_id"] = {128001, 128008, 128009};
  j["bos_token_id"] = nullptr;
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};  // legacy key
  const LlamaConfig d = parse_llama_config(j.dump());
  EXPECT_EQ(d.head_dim, 32);
  EXPECT_EQ(d.num_key_value_heads, 4);
  EXPECT_EQ(d.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_FALSE(d.bos_token_id.has_value());
  EXPECT_TRUE(d.qkv_bias && d.o_bias && d.mlp_bias);
  EXPECT_EQ(d.rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_EQ(d.rope_scaling.factor, 2.0);
}

TEST(LlamaConfigTest, ParsesMistralAndQwen2) {
  json mistral = llama_json();
  mistral["architectures"] = {"MistralForCausalLM"};
  mistral["model_type"] = "mistral";
  mistral["num_key_value_heads"] = 1;  // MQA
  mistral["max_position_embeddings"] = 4096;
  mistral["sliding_window"] = nullptr;
  const LlamaConfig m = parse_llama_config(mistral.dump(), "mistral/config.json");
  EXPECT_EQ(m.architecture, "MistralForCausalLM");
  EXPECT_EQ(m.n_kv_groups(), 4);
  EXPECT_FALSE(m.sliding_window.has_value());
  EXPECT_FALSE(m.qkv_bias);
  // Mistral-7B-v0.1's window, shorter than its context: honoured (the mask applies it).
  mistral["sliding_window"] = 4096;
  mistral["max_position_embeddings"] = 32768;
  EXPECT_EQ(parse_llama_config(mistral.dump()).sliding_window, 4096);
  mistral.erase("sliding_window");  // MistralConfig's default
  EXPECT_EQ(parse_llama_config(mistral.dump()).sliding_window, 4096);
  // Llama has no window: the key is ignored, as transformers ignores it.
  json llama = llama_json();
  llama["sliding_window"] = 16;
  EXPECT_FALSE(parse_llama_config(llama.dump()).sliding_window.has_value());

  json qwen = llama_json();
  qwen["architectures"] = {"Qwen2ForCausalLM"};
  qwen["model_type"] = "qwen2";
  qwen["num_key_value_heads"] = 2;
  qwen["max_position_embeddings"] = 32768;
  qwen["sliding_window"] = 4096;  // configured but off
  qwen["use_sliding_window"] = false;
  qwen["max_window_layers"] = 21;
  qwen["rope_theta"] = 1000000.0;
  qwen["tie_word_embeddings"] = true;
  qwen["bos_token_id"] = 151643;
  qwen["eos_token_id"] = 151645;
  const LlamaConfig q = parse_llama_config(qwen.dump(), "qwen/config.json");
  EXPECT_EQ(q.architecture, "Qwen2ForCausalLM");
  EXPECT_FALSE(q.sliding_window.has_value());  // configured but off, as Qwen2Config sets it
  EXPECT_TRUE(q.qkv_bias);
  EXPECT_FALSE(q.o_bias);
  EXPECT_FALSE(q.mlp_bias);
  EXPECT_EQ(q.rope_theta, 1e6);
  EXPECT_TRUE(q.tie_word_embeddings);
  EXPECT_EQ(q.bos_token_id, 151643);
  EXPECT_EQ(q.eos_token_ids, std::vector<int64_t>{151645});
  qwen.erase("bos_token_id");
  qwen.erase("eos_token_id");
  const LlamaConfig q2 = parse_llama_config(qwen.dump());
  EXPECT_FALSE(q2.bos_token_id.has_value());  // Qwen2Config has no default ids
  EXPECT_TRUE(q2.eos_token_ids.empty());
}

TEST(LlamaConfigTest, RefusesWhatItCannotRun) {
  struct Case {
    std::string label;
    std::function<void(json&)> edit;
    std::vector<std::string> parts;
  };
  const std::vector<Case> cases = {
      {"mistral window not positive",
       [](json& j) {
         j["architectures"] = {"MistralForCausalLM"};
         j["model_type"] = "mistral";
         j["sliding_window"] = 0;
       },
       {"\"sliding_window\"", "positive"}},
      {"qwen2 window in use",
       [](json& j) {
         j["architectures"] = {"Qwen2ForCausalLM"};
         j["model_type"] = "qwen2";
         j["max_position_embeddings"] = 32768;
         j["use_sliding_window"] = true;
         j["sliding_window"] = 4096;
       },
       {"\"sliding_window\"", "shorter than max_position_embeddings", "max_window_layers"}},
      {"unknown architecture",
       [](json& j) {
         j["architectures"] = {"GPT2LMHeadModel"};
         j["model_type"] = "gpt2";
       },
       {"\"architectures\"", "GPT2LMHeadModel", "not supported"}},
      {"no architecture",
       [](json& j) {
         j.erase("architectures");
         j["model_type"] = "falcon";
       },
       {"\"architectures\"", "falcon"}},
      {"gelu", [](json& j) { j["hidden_act"] = "gelu"; }, {"\"hidden_act\"", "gelu", "only silu"}},
      {"missing hidden_size",
       [](json& j) { j.erase("hidden_size"); },
       {"\"hidden_size\"", "missing"}},
      {"string vocab", [](json& j) { j["vocab_size"] = "1000"; }, {"\"vocab_size\"", "integer"}},
      {"kv heads",
       [](json& j) { j["num_key_value_heads"] = 3; },
       {"\"num_key_value_heads\"", "divide"}},
      {"odd head_dim", [](json& j) { j["head_dim"] = 15; }, {"\"head_dim\"", "even"}},
      {"yarn",
       [](json& j) {
         j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
       },
       {"\"rope_scaling\"", "yarn", "not supported"}},
      {"llama3 incomplete",
       [](json& j) {
         j["rope_scaling"] = {{"rope_type", "llama3"},
                              {"factor", 8.0},
                              {"high_freq_factor", 4.0},
                              {"original_max_position_embeddings", 8192}};
       },
       {"\"rope_scaling.low_freq_factor\"", "missing"}},
      {"mistral rope scaling",
       [](json& j) {
         j["architectures"] = {"MistralForCausalLM"};
         j["model_type"] = "mistral";
         j["sliding_window"] = nullptr;
         j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
       },
       {"\"rope_scaling\"", "MistralForCausalLM"}},
      {"quantized",
       [](json& j) {
         j["quantization_config"] = {{"quant_method", "gptq"}};
       },
       {"\"quantization_config\""}},
      {"partial rotary",
       [](json& j) { j["partial_rotary_factor"] = 0.5; },
       {"\"partial_rotary_factor\""}},
      {"type mismatch",
       [](json& j) { j["model_type"] = "qwen2"; },
       {"\"model_type\"", "LlamaForCausalLM"}},
      {"eos string", [](json& j) { j["eos_token_id"] = "</s>"; }, {"\"eos_token_id\""}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    json j = llama_json();
    c.edit(j);
    std::vector<std::string> parts = c.parts;
    parts.push_back("models/x/config.json");
    expect_error([&] { parse_llama_config(j.dump(), "models/x/config.json"); }, parts);
  }
  expect_error([] { parse_llama_config("{\"vocab_size\": ", "cut.json"); },
               {"cut.json", "not valid JSON"});
  expect_error([] { parse_llama_config("[1]", "list.json"); }, {"list.json", "not a JSON object"});
  TempDir tmp;
  expect_error([&] { load_llama_config(tmp.path()); }, {"config.json", "cannot open"});
  write_file(tmp / "config.json", llama_json().dump());
  EXPECT_EQ(load_llama_config(tmp.path()).source, (tmp / "config.json").string());
}

// theta^(-2i/d) in double.
std::vector<double> plain_inv_freq(double theta, int64_t dim) {
  std::vector<double> out;
  for (int64_t i = 0; i < dim / 2; ++i) out.push_back(std::pow(theta, -2.0 * i / dim));
  return out;
}

void expect_close(const at::Tensor& got, const std::vector<double>& want, double rel = 2e-6) {
  ASSERT_EQ(got.scalar_type(), at::kFloat);
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[i].item<float>(), want[i], rel * std::abs(want[i])) << "index " << i;
  }
}

TEST(LlamaConfigTest, RopeInvFreqPlainAndLinear) {
  json j = llama_json();
  j["rope_theta"] = 500000.0;
  const LlamaConfig c = parse_llama_config(j.dump());
  expect_close(rope_inv_freq(c), plain_inv_freq(500000.0, 16));
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 4.0}};
  std::vector<double> want = plain_inv_freq(500000.0, 16);
  for (double& f : want) f /= 4.0;
  expect_close(rope_inv_freq(parse_llama_config(j.dump())), want);
}

TEST(LlamaConfigTest, RopeInvFreqLlama3MatchesTheThreeBands) {
  SKIP_WITHOUT_SHARED();
  const LlamaConfig c = load_llama_config(shared_path("fixtures/hf-llama/llama3-rope"));
  const at::Tensor got = rope_inv_freq(c);  // [8]
  ASSERT_EQ(got.sizes().vec(), std::vector<int64_t>{8});
  // Llama 3.1 rule, from the formula: wavelength < original / high: kept;
  // > original / low: divided by factor; in between: a blend.
  const double factor = 8, low = 1, high = 4, original = 64;
  std::vector<double> want;
  int kept = 0, divided = 0, blended = 0;
  for (double f : plain_inv_freq(500000.0, 16)) {
    const double wavelen = 2 * M_PI / f;
    if (wavelen < original / high) {
      want.push_back(f);
      ++kept;
    } else if (wavelen > original / low) {
      want.push_back(f / factor);
      ++divided;
    } else {
      const double smooth = (original / wavelen - low) / (high - low);
      want.push_back((1 - smooth) * f / factor + smooth * f);
      ++blended;
    }
  }
  EXPECT_GT(kept, 0);  // the fixture exercises every band
  EXPECT_GT(divided, 0);
  EXPECT_GT(blended, 0);
  expect_close(got, want);
  // Same computation as rope_inv_freq(config) at any length for non-dynamic types.
  EXPECT_TRUE(at::equal(rope_inv_freq(c, 4096), got));
}

TEST(LlamaConfigTest, RopeInvFreqDynamicGrowsWithSequenceLength) {
  json j = llama_json();
  j["max_position_embeddings"] = 512;
  j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  const LlamaConfig c = parse_llama_config(j.dump());
  const std::vector<double> plain = plain_inv_freq(10000.0, 16);
  expect_close(rope_inv_freq(c), plain);       // init time: max_position_embeddings
  expect_close(rope_inv_freq(c, 300), plain);  // within the context: unchanged
  const double len = 2048, dim = 16;
  const double base = 10000.0 * std::pow(2.0 * len / 512 - 1.0, dim / (dim - 2));
  expect_close(rope_inv_freq(c, 2048), plain_inv_freq(base, 16), 1e-5);
}

}  // namespace
}  // namespace vitrine::models
