// `vitrine export`'s directories in the real transformers 4.46.3: each of
// mha-untied and llama3-rope (../shared/fixtures/hf-llama) with its PEFT
// adapter merged, in float32 and in bfloat16, sharded with an index, loads
// with AutoModelForCausalLM without a missing or unexpected tensor, takes
// config.json's torch_dtype under torch_dtype="auto", and computes (in
// float32, on the written weights) the logits vitrine computes from the same
// directory; unmerged, the base with OUT/adapter applied by peft 0.13.2's
// PeftModel does the same.
//
// Two ways: TransformersRecord checks against tests/data/transformers/
// export.safetensors (scripts/make_export_reference.py), transformers'
// logits of each case together with the files it read: the test exports
// again, finds the same files (sizes and CRC-32s), and computes the same
// logits. It runs everywhere. Transformers.ExportedDirectoriesComputeOurLogits
// runs transformers on this build's exports (scripts/transformers_logits.py);
// without the reference stack (../shared/reference; cmake
// -DVITRINE_REFERENCE_SRC=DIR or the *_SRC variables) it skips, saying what
// is missing.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
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

// The logits of the export in `dir` (of `fixture`, merged or with its adapter
// beside it) against transformers' (`theirs`, at `ids`), in both layouts.
void expect_transformers_logits(const fs::path& dir, const std::string& fixture, bool merged,
                                const at::Tensor& ids, const at::Tensor& theirs,
                                const std::string& name) {
  {
    // Not vacuous: transformers computed with the adapter.
    LlamaForCausalLM base = load_llama(testing::shared_path("fixtures/hf-llama/" + fixture));
    at::NoGradGuard no_grad;
    const double moved = max_abs_diff(base->forward(ids.unsqueeze(0))[0], theirs);
    EXPECT_GT(moved, 1e-2) << "the adapter moved transformers' logits by only " << moved;
  }
  for (const WeightLayout layout : {WeightLayout::kCheckpoint, WeightLayout::kPacked}) {
    LlamaForCausalLM model = load_llama(dir, "cpu", layout);
    RowAdapters rows;
    if (!merged) {
      attach_adapter(model, load_peft_adapter(dir / "adapter"), 0);
      rows = {0};
    }
    at::NoGradGuard no_grad;
    const double error = max_abs_diff(model->forward(ids.unsqueeze(0), nullptr, rows)[0], theirs);
    EXPECT_LT(error, kTolerance);
    const std::string label = name + (layout == WeightLayout::kPacked ? "_packed" : "_checkpoint");
    ::testing::Test::RecordProperty("max_abs_logit_error_" + label, fmt::format("{:.3g}", error));
    std::printf("%s: max |logit - transformers| %.3g\n", label.c_str(), error);
  }
}

// One function checks every case, so one test process exports them all and
// starts transformers once (most of the time is its import).
// Merged: transformers alone; unmerged: transformers with peft's PeftModel.
void check_case(const Reference& r, size_t i) {
  const Case& c = cases()[i];
  SCOPED_TRACE(case_name(c));
  const fs::path dir = r.dir.path() / case_name(c);
  ASSERT_TRUE(CheckpointWeights::open(dir).sharded()) << "the case is meant to be sharded";
  EXPECT_EQ(r.logits->metadata().at(fmt::format("auto_dtype.{}", i)),
            export_dtype_name(std::get<1>(c)));
  expect_transformers_logits(dir, std::get<0>(c), std::get<2>(c), r.ids,
                             r.logits->get(fmt::format("logits.{}", i)), case_name(c));
}

TEST(Transformers, ExportedDirectoriesComputeOurLogits) {
  Reference r;
  make_reference(&r);
  if (!r.skip.empty()) GTEST_SKIP() << r.skip;
  if (!r.run.skip.empty()) GTEST_SKIP() << r.run.skip;
  ASSERT_TRUE(r.run.failure.empty()) << r.run.failure;
  for (size_t i = 0; i < cases().size(); ++i) check_case(r, i);
}

// [[relative path, bytes, crc32], ...] of every file under `root` but the
// export's marker (it names the paths the export came from), sorted, as
// scripts/make_export_reference.py lists them.
nlohmann::json listing(const fs::path& root) {
  std::vector<std::tuple<std::string, uint64_t, uint64_t>> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file() || entry.path().filename() == kExportMarker) continue;
    const std::string bytes = testing::read_file(entry.path());
    const uLong crc = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()),
                            static_cast<uInt>(bytes.size()));
    files.emplace_back(fs::relative(entry.path(), root).string(), bytes.size(), crc);
  }
  std::sort(files.begin(), files.end());
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [path, size, crc] : files) out.push_back({path, size, crc});
  return out;
}

TEST(TransformersRecord, ExportsAreTheRecordedFilesAndComputeTransformersLogits) {
  const fs::path path = fs::path(VITRINE_TEST_DATA_DIR) / "transformers" / "export.safetensors";
  const SafetensorsFile record = SafetensorsFile::open(path);
  const auto& meta = record.metadata();
  const int cases = std::stoi(meta.at("cases"));
  ASSERT_GE(cases, 4);
  const at::Tensor ids = record.get("ids");
  testing::TempDir tmp;
  for (int i = 0; i < cases; ++i) {
    const std::string what = meta.at(fmt::format("case.{}", i));
    SCOPED_TRACE(what);
    std::istringstream words(what);
    std::string fixture, dtype, merged;
    words >> fixture >> dtype >> merged;
    ExportOptions o;
    o.model = testing::shared_path("fixtures/hf-llama/" + fixture);
    if (!fs::exists(o.model))
      GTEST_SKIP() << o.model << " not found (../shared is not beside this checkout)";
    o.adapter = o.model / "adapter";
    o.out = tmp.path() / std::to_string(i);
    o.merge = merged == "merged";
    o.dtype = parse_export_dtype(dtype);
    o.max_shard_bytes = std::stoll(meta.at("shard_bytes"));
    o.progress = false;
    export_model(o);
    ASSERT_TRUE(CheckpointWeights::open(o.out).sharded()) << "the case is meant to be sharded";
    ASSERT_EQ(listing(o.out), nlohmann::json::parse(meta.at(fmt::format("files.{}", i))))
        << "the export's files are not the ones transformers read: if the export changed on"
        << " purpose, record again (scripts/make_export_reference.py --vitrine build/cli/vitrine)";
    EXPECT_EQ(meta.at(fmt::format("auto_dtype.{}", i)), export_dtype_name(o.dtype));
    std::string name = fmt::format("recorded_{}_{}_{}", fixture, dtype, merged);
    std::replace(name.begin(), name.end(), '-', '_');
    expect_transformers_logits(o.out, fixture, o.merge, ids,
                               record.get(fmt::format("logits.{}", i)), name);
  }
}

}  // namespace
}  // namespace vitrine::models
