// export_model: a base and a PEFT adapter written as a Hugging Face model
// directory. Merged, it computes what the base with the adapter attached
// computes (float32 within 1e-5; bf16 exactly what the bf16-rounded merged
// weights compute); unmerged, the base and OUT/adapter load back as they
// were; small shard sizes give an index that reads back bit for bit; and
// every refusal names what and where and leaves nothing behind. The
// fixtures are ../shared/fixtures/hf-llama and ../shared/models/stories260K-hf.
#include "models/export.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "models/checkpoint_weights.h"
#include "models/kernels/packed_linear_bf16.h"
#include "models/llama.h"
#include "models/peft_adapter.h"
#include "tests/support/expect_error.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tensors.h"

namespace vitrine::models {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;
using testing::max_abs_diff;
using testing::read_json;
using testing::shared_path;
using testing::TempDir;

fs::path fixture(const std::string& name) {
  return shared_path("fixtures/hf-llama/" + name);
}

#define SKIP_WITHOUT(dir) \
  if (!fs::exists(dir))   \
  GTEST_SKIP() << (dir) << " not found (../shared is not beside this checkout)"

ExportOptions options(const fs::path& model, const fs::path& adapter, const fs::path& out,
                      bool merge, ExportDtype dtype = ExportDtype::kFloat32) {
  ExportOptions o;
  o.model = model;
  o.adapter = adapter;
  o.out = out;
  o.merge = merge;
  o.dtype = dtype;
  o.progress = false;
  return o;
}

// Same dtype, shape and bytes.
bool bit_equal(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const at::ScalarType bits = a.element_size() == 2 ? at::kShort : at::kInt;
  return at::equal(a.contiguous().view(bits), b.contiguous().view(bits));
}

// Every position's logits of one 40-token sequence: [40, vocab].
at::Tensor logits(LlamaForCausalLM& model, const RowAdapters& rows = {}) {
  at::NoGradGuard no_grad;
  const at::Tensor ids = (at::arange(40, at::kLong) * 37 + 1).remainder(500).unsqueeze(0);
  return model->forward(ids, nullptr, rows)[0];
}

// Entries of `dir` whose name marks a staging directory or temporary file.
std::vector<std::string> leftovers(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.path().filename().string().find(".tmp-") != std::string::npos)
      out.push_back(e.path().string());
  }
  return out;
}

// A model directory at `dir` with `base`'s config.json and its weights
// (float32) each passed through `alter(name, weight)`.
void altered_copy(const fs::path& base, const fs::path& dir,
                  const std::function<at::Tensor(const std::string&, const at::Tensor&)>& alter) {
  const CheckpointWeights original = CheckpointWeights::open(base);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const std::string& name : original.names()) {
    tensors.emplace_back(name, alter(name, original.get(name)));
  }
  fs::create_directories(dir);
  fs::copy_file(base / "config.json", dir / "config.json");
  save_checkpoint_weights(dir, tensors, int64_t{1} << 40);
}

class ExportFixture : public ::testing::TestWithParam<std::string> {
 protected:
  fs::path base() const { return fixture(GetParam()); }
  fs::path adapter() const { return base() / "adapter"; }
  LlamaForCausalLM base_with_adapter() const {
    LlamaForCausalLM model = load_llama(base());
    attach_adapter(model, load_peft_adapter(adapter()), 0);
    return model;
  }
};

TEST_P(ExportFixture, MergedFloat32GivesTheLogitsOfBasePlusAdapter) {
  SKIP_WITHOUT(base());
  TempDir tmp;
  const ExportResult r = export_model(options(base(), adapter(), tmp / "out", /*merge=*/true));
  EXPECT_EQ(r.dtype, ExportDtype::kFloat32);
  EXPECT_EQ(r.adapter_modules, static_cast<int64_t>(load_peft_adapter(adapter()).modules.size()));
  LlamaForCausalLM with_adapter = base_with_adapter();
  LlamaForCausalLM exported = load_llama(tmp / "out");
  const double error = max_abs_diff(logits(exported), logits(with_adapter, {0}));
  EXPECT_LT(error, 1e-5);
  std::printf("%s merged f32: max |logit - base+adapter| %.3g\n", GetParam().c_str(), error);
  // The weights are merge_adapter's, bit for bit.
  merge_adapter(with_adapter, 0);
  const CheckpointWeights written = CheckpointWeights::open(tmp / "out");
  for (const auto& item : with_adapter->named_parameters(/*recurse=*/true)) {
    EXPECT_TRUE(bit_equal(written.stored(item.key()), item.value())) << item.key();
  }
  EXPECT_FALSE(fs::exists(tmp / "out" / "adapter"));
}

TEST_P(ExportFixture, MergedBf16HoldsTheRoundedMergedWeights) {
  SKIP_WITHOUT(base());
  TempDir tmp;
  export_model(options(base(), adapter(), tmp / "out", true, ExportDtype::kBFloat16));
  EXPECT_EQ(read_json(tmp / "out" / "config.json")["torch_dtype"], "bfloat16");
  // What the export should hold: merge_adapter's float32 weights, each rounded once.
  LlamaForCausalLM rounded = base_with_adapter();
  merge_adapter(rounded, 0);
  const CheckpointWeights written = CheckpointWeights::open(tmp / "out");
  at::NoGradGuard no_grad;
  for (auto& item : rounded->named_parameters(/*recurse=*/true)) {
    const at::Tensor bf16 = item.value().to(at::kBFloat16);
    EXPECT_TRUE(bit_equal(written.stored(item.key()), bf16)) << item.key();
    // The rounding the bf16 kernels use when they pack float32 weights.
    const at::Tensor f32 = item.value().contiguous();
    const at::Tensor bits = written.stored(item.key()).contiguous().view(at::kShort);
    for (int64_t i = 0; i < f32.numel(); ++i) {
      const auto want = static_cast<int16_t>(bf16_from_float(f32.data_ptr<float>()[i]));
      if (bits.data_ptr<int16_t>()[i] != want) {
        ADD_FAILURE() << item.key() << "[" << i << "] is not bf16_from_float's rounding";
        break;
      }
    }
    item.value().copy_(bf16);
  }
  LlamaForCausalLM exported = load_llama(tmp / "out");
  EXPECT_TRUE(at::equal(logits(exported), logits(rounded)));
  LlamaForCausalLM float32 = base_with_adapter();
  const double rounding = max_abs_diff(logits(exported), logits(float32, {0}));
  std::printf("%s merged bf16: max |logit - float32 base+adapter| %.3g (the rounding's)\n",
              GetParam().c_str(), rounding);
}

TEST_P(ExportFixture, UnmergedWritesTheBaseWithTheAdapterBesideIt) {
  SKIP_WITHOUT(base());
  TempDir tmp;
  const ExportResult r = export_model(options(base(), adapter(), tmp / "out", false));
  EXPECT_EQ(read_json(tmp / "out" / "adapter" / "adapter_config.json")["base_model_name_or_path"],
            "..");
  const CheckpointWeights original = CheckpointWeights::open(base());
  const CheckpointWeights written = CheckpointWeights::open(tmp / "out");
  ASSERT_EQ(written.names(), original.names());
  for (const std::string& name : original.names()) {
    EXPECT_TRUE(bit_equal(written.stored(name), original.stored(name))) << name;
  }
  const PeftAdapter a = load_peft_adapter(adapter()), b = load_peft_adapter(tmp / "out/adapter");
  ASSERT_EQ(b.modules.size(), a.modules.size());
  EXPECT_EQ(r.adapter_modules, static_cast<int64_t>(a.modules.size()));
  for (const auto& [path, w] : a.modules) {
    EXPECT_TRUE(at::equal(b.modules.at(path).a, w.a) && at::equal(b.modules.at(path).b, w.b))
        << path;
    EXPECT_EQ(b.modules.at(path).scaling, w.scaling) << path;
  }
  LlamaForCausalLM exported = load_llama(tmp / "out");
  attach_adapter(exported, b, 0);
  LlamaForCausalLM with_adapter = base_with_adapter();
  EXPECT_TRUE(at::equal(logits(exported, {0}), logits(with_adapter, {0})));
}

INSTANTIATE_TEST_SUITE_P(HfLlama, ExportFixture, ::testing::Values("mha-untied", "llama3-rope"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(Export, SmallShardsGiveAnIndexThatReadsBackBitForBit) {
  SKIP_WITHOUT(fixture("mha-untied"));
  TempDir tmp;
  const fs::path base = fixture("mha-untied");
  const CheckpointWeights original = CheckpointWeights::open(base);
  for (const ExportDtype dtype : {ExportDtype::kFloat32, ExportDtype::kBFloat16}) {
    const fs::path out = tmp / export_dtype_name(dtype);
    ExportOptions o = options(base, base / "adapter", out, false, dtype);
    o.max_shard_bytes = 100'000;
    const ExportResult r = export_model(o);
    SCOPED_TRACE(out.string());
    ASSERT_GT(r.weight_files.size(), 3u);
    EXPECT_EQ(r.weight_files.front(), kWeightsIndexFile);
    const size_t shards = r.weight_files.size() - 1;
    const auto index = read_json(out / kWeightsIndexFile);
    std::map<std::string, int> tensors_in;  // shard -> tensors
    for (const auto& [name, shard] : index["weight_map"].items()) ++tensors_in[shard];
    for (size_t i = 1; i <= shards; ++i) {
      const std::string& shard = r.weight_files[i];
      EXPECT_EQ(shard, fmt::format("model-{:05d}-of-{:05d}.safetensors", i, shards));
      // At most the size (plus its header), unless one tensor alone is larger.
      if (tensors_in[shard] > 1) {
        EXPECT_LE(fs::file_size(out / shard), 100'000u + 4096u) << shard;
      }
    }
    EXPECT_FALSE(fs::exists(out / kSingleWeightsFile));
    EXPECT_EQ(index["metadata"]["total_size"].get<int64_t>(), r.weight_bytes);
    const CheckpointWeights written = CheckpointWeights::open(out);
    ASSERT_TRUE(written.sharded());
    ASSERT_EQ(written.names(), original.names());
    for (const std::string& name : original.names()) {
      const at::Tensor want =
          original.stored(name).to(dtype == ExportDtype::kFloat32 ? at::kFloat : at::kBFloat16);
      EXPECT_TRUE(bit_equal(written.stored(name), want)) << name;
    }
    LlamaForCausalLM model = load_llama(out);  // and it loads as a model
  }
}

TEST(Export, AutoWritesTheDtypeTheProjectionsAreStoredIn) {
  SKIP_WITHOUT(fixture("mha-untied"));
  TempDir tmp;
  const fs::path base = fixture("mha-untied"), adapter = base / "adapter";
  EXPECT_EQ(export_model(options(base, adapter, tmp / "f32", true, ExportDtype::kAuto)).dtype,
            ExportDtype::kFloat32);
  EXPECT_EQ(read_json(tmp / "f32" / "config.json")["torch_dtype"], "float32");
  // A bf16 base exported with auto stays bf16, its stored bytes untouched.
  export_model(options(base, adapter, tmp / "bf16", false, ExportDtype::kBFloat16));
  EXPECT_EQ(
      export_model(options(tmp / "bf16", adapter, tmp / "again", false, ExportDtype::kAuto)).dtype,
      ExportDtype::kBFloat16);
  EXPECT_EQ(read_json(tmp / "again" / "config.json")["torch_dtype"], "bfloat16");
  const CheckpointWeights bf16 = CheckpointWeights::open(tmp / "bf16");
  const CheckpointWeights again = CheckpointWeights::open(tmp / "again");
  for (const std::string& name : bf16.names()) {
    EXPECT_TRUE(bit_equal(again.stored(name), bf16.stored(name))) << name;
  }
}

TEST(Export, AutoRefusesProjectionsStoredInSeveralDtypes) {
  SKIP_WITHOUT(fixture("mha-untied"));
  TempDir tmp;
  const fs::path base = fixture("mha-untied");
  altered_copy(base, tmp / "mixed", [](const std::string& name, const at::Tensor& t) {
    return t.to(name.find("layers.1.mlp") != std::string::npos ? at::kBFloat16 : at::kFloat);
  });
  expect_error(
      [&] {
        export_model(
            options(tmp / "mixed", base / "adapter", tmp / "out", true, ExportDtype::kAuto));
      },
      {"--dtype auto", "several dtypes", "BF16", "F32", "model.layers.1.mlp.", "--dtype f32"});
  EXPECT_FALSE(fs::exists(tmp / "out"));
}

// A tied model (stories260K) with an adapter made here: the merged export
// computes what base + adapter computes, and the base's other files come along.
TEST(Export, CopiesTheBaseFilesAndSetsTorchDtype) {
  const fs::path base = shared_path("models/stories260K-hf");
  SKIP_WITHOUT(base);
  TempDir tmp;
  LlamaForCausalLM model = load_llama(base);
  PeftAdapter adapter;
  adapter.config.r = 4;
  adapter.config.lora_alpha = 8;
  adapter.config.target_modules = {"q_proj", "v_proj", "down_proj"};
  at::manual_seed(7);
  for (auto& [path, module] : model->projections()) {
    if (!path.ends_with("q_proj") && !path.ends_with("v_proj") && !path.ends_with("down_proj"))
      continue;
    adapter.modules[path] = {at::randn({4, module->in_features()}) * 0.1,
                             at::randn({module->out_features(), 4}) * 0.1, adapter.config.scaling(),
                             0.0};
  }
  save_peft_adapter(tmp / "adapter", adapter);
  export_model(options(base, tmp / "adapter", tmp / "out", true, ExportDtype::kBFloat16));
  for (const char* name : {"generation_config.json", "tokenizer.model", "tokenizer_config.json",
                           "special_tokens_map.json"}) {
    EXPECT_EQ(testing::read_file(tmp / "out" / name), testing::read_file(base / name)) << name;
  }
  nlohmann::json config = read_json(tmp / "out" / "config.json");
  EXPECT_EQ(config["torch_dtype"], "bfloat16");
  config["torch_dtype"] = "float32";
  EXPECT_EQ(config, read_json(base / "config.json"));
  EXPECT_FALSE(CheckpointWeights::open(tmp / "out").contains("lm_head.weight"));  // still tied
  attach_adapter(model, adapter, 0);
  LlamaForCausalLM exported = load_llama(tmp / "out");
  std::printf("stories260K merged bf16: max |logit - float32 base+adapter| %.3g\n",
              max_abs_diff(logits(exported), logits(model, {0})));
  EXPECT_TRUE(fs::is_regular_file(tmp / "out" / kExportMarker));
}

TEST(Export, ReplacesAnEarlierExportButNoOtherDirectory) {
  SKIP_WITHOUT(fixture("mha-untied"));
  TempDir tmp;
  const fs::path base = fixture("mha-untied"), adapter = base / "adapter", out = tmp / "out";
  export_model(options(base, adapter, out, false));
  EXPECT_TRUE(fs::exists(out / "adapter"));
  export_model(options(base, adapter, out.string() + "/", true, ExportDtype::kBFloat16));
  EXPECT_FALSE(fs::exists(out / "adapter")) << "the earlier export was not replaced whole";
  EXPECT_EQ(read_json(out / "config.json")["torch_dtype"], "bfloat16");
  // A file of the user's in it: refused, and the directory left as it was.
  testing::write_file(out / "notes.txt", "mine");
  auto before = testing::directory_tree(out);
  expect_error([&] { export_model(options(base, adapter, out, true)); },
               {out.string(), "'notes.txt'", "export did not write"});
  EXPECT_EQ(testing::directory_tree(out), before);
  // A directory export did not write, even one that looks like a model.
  fs::create_directories(tmp / "model");
  fs::copy_file(base / "config.json", tmp / "model" / "config.json");
  before = testing::directory_tree(tmp / "model");
  expect_error([&] { export_model(options(base, adapter, tmp / "model", true)); },
               {"not a model directory written by vitrine export", kExportMarker, "config.json"});
  EXPECT_EQ(testing::directory_tree(tmp / "model"), before);
  testing::write_file(tmp / "file", "x");
  expect_error([&] { export_model(options(base, adapter, tmp / "file", true)); },
               {"not a directory"});
  EXPECT_EQ(testing::read_file(tmp / "file"), "x");
  EXPECT_TRUE(leftovers(tmp.path()).empty()) << leftovers(tmp.path()).front();
}

TEST(Export, RefusesOutputsThatOverlapItsInputs) {
  SKIP_WITHOUT(fixture("mha-untied"));
  TempDir tmp;
  // Copies, so that a failure of the test cannot touch ../shared.
  fs::copy(fixture("mha-untied"), tmp / "base", fs::copy_options::recursive);
  fs::create_directories(tmp / "run");
  fs::copy(tmp / "base" / "adapter", tmp / "run" / "adapter", fs::copy_options::recursive);
  const fs::path base = tmp / "base", adapter = tmp / "run" / "adapter";
  const auto base_before = testing::directory_tree(base),
             run_before = testing::directory_tree(tmp / "run");
  const std::vector<std::tuple<fs::path, fs::path, std::vector<std::string>>> cases = {
      {base, base / "adapter", {"is the base model", base.string()}},
      {base / "exported", base / "adapter", {"is inside the base model", base.string()}},
      {base / "sub" / "..", base / "adapter", {"is the base model"}},
      {tmp.path(), adapter, {"contains the base model"}},
      {adapter, adapter, {"the adapter", adapter.string()}},
      {tmp / "run", adapter, {"contains the adapter", adapter.string()}},
  };
  for (const auto& [out, with, parts] : cases) {
    SCOPED_TRACE(out.string());
    expect_error([&] { export_model(options(base, with, out, true)); }, parts);
  }
  EXPECT_EQ(testing::directory_tree(base), base_before);
  EXPECT_EQ(testing::directory_tree(tmp / "run"), run_before);
  EXPECT_TRUE(leftovers(tmp.path()).empty());
}

TEST(Export, RefusesAnAdapterForAnotherBase) {
  SKIP_WITHOUT(fixture("mha-untied"));
  TempDir tmp;
  // hidden 96 against the adapter's 64; then hidden 128 against 64.
  for (const auto& [base, adapter] :
       {std::pair{fixture("gqa-tied"), fixture("mha-untied") / "adapter"},
        std::pair{fixture("mha-untied"), fixture("llama3-rope") / "adapter"}}) {
    for (const bool merge : {true, false}) {
      expect_error([&] { export_model(options(base, adapter, tmp / "out", merge)); },
                   {"adapter '" + adapter.string() + "'", "model.layers.0.", "[", base.string(),
                    "an adapter for another base?"});
      EXPECT_FALSE(fs::exists(tmp / "out"));
    }
  }
  // A module the base does not have at all.
  PeftAdapter extra = load_peft_adapter(fixture("mha-untied") / "adapter");
  extra.modules["model.layers.7.self_attn.q_proj"] = extra.modules.begin()->second;
  save_peft_adapter(tmp / "extra", extra);
  expect_error(
      [&] { export_model(options(fixture("mha-untied"), tmp / "extra", tmp / "out", true)); },
      {"module 'model.layers.7.self_attn.q_proj' is not in the base model",
       "model.layers.7.self_attn.q_proj.weight", "an adapter for another base?"});
  EXPECT_FALSE(fs::exists(tmp / "out"));
  EXPECT_TRUE(leftovers(tmp.path()).empty());
}

TEST(Export, RefusesDtypesItCannotWrite) {
  EXPECT_EQ(parse_export_dtype("bf16"), ExportDtype::kBFloat16);
  EXPECT_EQ(parse_export_dtype("bfloat16"), ExportDtype::kBFloat16);
  EXPECT_EQ(parse_export_dtype("f32"), ExportDtype::kFloat32);
  EXPECT_EQ(parse_export_dtype("auto"), ExportDtype::kAuto);
  for (const char* bad : {"fp8", "int8", "BF16", ""}) {
    testing::expect_throw_naming<std::invalid_argument>([&] { parse_export_dtype(bad); },
                                                        fmt::format("dtype '{}'", bad));
  }
  SKIP_WITHOUT(fixture("mha-untied"));
  // float16 cannot hold a weight past 65504: refused naming the tensor, nothing written.
  TempDir tmp;
  const fs::path base = fixture("mha-untied");
  altered_copy(base, tmp / "large", [](const std::string& name, const at::Tensor& t) {
    at::Tensor out = t.clone();
    if (name == "model.layers.1.mlp.up_proj.weight") out[3][5] = 1e6;
    return out;
  });
  expect_error(
      [&] {
        export_model(
            options(tmp / "large", base / "adapter", tmp / "out", false, ExportDtype::kFloat16));
      },
      {"model.layers.1.mlp.up_proj.weight", "1 non-finite", "float16", "65504", "bf16 or f32"});
  EXPECT_FALSE(fs::exists(tmp / "out"));
  EXPECT_TRUE(leftovers(tmp.path()).empty());
}

}  // namespace
}  // namespace vitrine::models
