// `vitrine export`'s directories in the real transformers 4.46.3: each of
// mha-untied and llama3-rope (../shared/fixtures/hf-llama) with its PEFT
// adapter merged, in float32 and in bfloat16, sharded with an index, loads
// with AutoModelForCausalLM without a missing or unexpected tensor, takes
// config.json's torch_dtype under torch_dtype="auto", and computes (in
// float32, on the written weights) the logits vitrine computes from the same
// directory; unmerged, the base with OUT/adapter applied by peft 0.13.2's
// PeftModel does the same. scripts/transformers_logits.py runs them; without
// the reference stack (../shared/reference; cmake -DVITRINE_REFERENCE_SRC=DIR
// or the *_SRC variables) the test skips, saying what is missing.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <tuple>

#include "models/checkpoint_weights.h"
#include "models/export.h"
#include "models/llama.h"
#include "models/peft_adapter.h"
#include "models/safetensors.h"
#include "tests/support/reference_script.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tensors.h"

namespace vitrine::models {
namespace {

namespace fs = std::filesystem;
using testing::max_abs_diff;

constexpr double kTolerance = 1e-4;  // as for every comparison with transformers
constexpr int64_t kShardBytes = 300'000;

using Case = std::tuple<std::string, ExportDtype, bool>;  // fixture, dtype written, merged
const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"mha-untied", ExportDtype::kFloat32, true},   {"mha-untied", ExportDtype::kBFloat16, true},
      {"llama3-rope", ExportDtype::kFloat32, true},  {"llama3-rope", ExportDtype::kBFloat16, true},
      {"mha-untied", ExportDtype::kBFloat16, false}, {"llama3-rope", ExportDtype::kFloat32, false}};
  return all;
}

std::string case_name(const Case& c) {
  std::string name = fmt::format("{}_{}{}", std::get<0>(c), export_dtype_name(std::get<1>(c)),
                                 std::get<2>(c) ? "" : "_unmerged");
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

// Every case exported into one folder, and transformers' logits of them all
// from one run of the script.
struct Reference {
  testing::TempDir dir;
  std::string skip;
  testing::ReferenceRun run;
  at::Tensor ids;                         // [n]
  std::optional<SafetensorsFile> logits;  // logits.<i> [n, vocab], metadata auto_dtype.<i>
};

void make_reference(Reference* r) {
  std::string models, adapters;
  for (size_t i = 0; i < cases().size(); ++i) {
    const fs::path base = testing::shared_path("fixtures/hf-llama/" + std::get<0>(cases()[i]));
    if (!fs::exists(base)) {
      r->skip = base.string() + " not found (../shared is not beside this checkout)";
      return;
    }
    ExportOptions o;
    o.model = base;
    o.adapter = base / "adapter";
    o.out = r->dir.path() / case_name(cases()[i]);
    o.merge = std::get<2>(cases()[i]);
    o.dtype = std::get<1>(cases()[i]);
    o.max_shard_bytes = kShardBytes;
    o.progress = false;
    export_model(o);
    models += fmt::format(" --model '{}'", o.out.string());
    adapters += fmt::format(" --adapter '{}'", o.merge ? "" : (o.out / "adapter").string());
  }
  r->ids = (at::arange(48, at::kLong) * 53 + 1).remainder(509);  // vocabularies are 512 and 1024
  std::string ids;
  for (int64_t i = 0; i < r->ids.size(0); ++i) {
    ids += fmt::format("{}{}", i ? "," : "", r->ids[i].item<int64_t>());
  }
  const fs::path out = r->dir.path() / "transformers.safetensors";
  r->run = testing::run_reference_script(
      "transformers_logits.py",
      fmt::format("{}{} --ids {} --out '{}'", models, adapters, ids, out.string()),
      r->dir.path() / "transformers.log");
  if (r->run.skip.empty() && r->run.failure.empty()) r->logits = SafetensorsFile::open(out);
}

// One function checks every case, so one test process exports them all and
// starts transformers once (most of the time is its import).
// Merged: transformers alone; unmerged: transformers with peft's PeftModel.
void check_case(const Reference& r, size_t i) {
  const Case& c = cases()[i];
  SCOPED_TRACE(case_name(c));
  const fs::path dir = r.dir.path() / case_name(c);
  ASSERT_TRUE(CheckpointWeights::open(dir).sharded()) << "the case is meant to be sharded";
  // torch_dtype="auto" gives the dtype written.
  EXPECT_EQ(r.logits->metadata().at(fmt::format("auto_dtype.{}", i)),
            export_dtype_name(std::get<1>(c)));
  const at::Tensor theirs = r.logits->get(fmt::format("logits.{}", i));  // [n, vocab]
  {
    // Not vacuous: transformers computed with the adapter.
    LlamaForCausalLM base = load_llama(testing::shared_path("fixtures/hf-llama/" + std::get<0>(c)));
    at::NoGradGuard no_grad;
    const double moved = max_abs_diff(base->forward(r.ids.unsqueeze(0))[0], theirs);
    EXPECT_GT(moved, 1e-2) << "the adapter moved transformers' logits by only " << moved;
  }
  for (const WeightLayout layout : {WeightLayout::kCheckpoint, WeightLayout::kPacked}) {
    LlamaForCausalLM model = load_llama(dir, "cpu", layout);
    RowAdapters rows;
    if (!std::get<2>(c)) {
      attach_adapter(model, load_peft_adapter(dir / "adapter"), 0);
      rows = {0};
    }
    at::NoGradGuard no_grad;
    const double error = max_abs_diff(model->forward(r.ids.unsqueeze(0), nullptr, rows)[0], theirs);
    EXPECT_LT(error, kTolerance);
    const std::string name =
        case_name(c) + (layout == WeightLayout::kPacked ? "_packed" : "_checkpoint");
    ::testing::Test::RecordProperty("max_abs_logit_error_" + name, fmt::format("{:.3g}", error));
    std::printf("%s: max |logit - transformers| %.3g\n", name.c_str(), error);
  }
}

TEST(Transformers, ExportedDirectoriesComputeOurLogits) {
  Reference r;
  make_reference(&r);
  if (!r.skip.empty()) GTEST_SKIP() << r.skip;
  if (!r.run.skip.empty()) GTEST_SKIP() << r.run.skip;
  ASSERT_TRUE(r.run.failure.empty()) << r.run.failure;
  for (size_t i = 0; i < cases().size(); ++i) check_case(r, i);
}

}  // namespace
}  // namespace vitrine::models
