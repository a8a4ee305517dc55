#include "models/export.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <tuple>

#include "common/atomic_output.h"
#include "common/progress.h"
#include "common/replaceable_dir.h"
#include "common/text_file.h"
#include "models/checkpoint_weights.h"
#include "models/llama_config.h"
#include "models/peft_adapter.h"
#include "models/safetensors.h"

namespace vitrine::models {
namespace fs = std::filesystem;
namespace {

// Files of the base copied unchanged: generation settings and every
// tokenizer format transformers and llama.cpp's converter read.
constexpr std::array<const char*, 10> kCopiedFiles = {
    "generation_config.json",  "tokenizer.json",     "tokenizer.model", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json",  "vocab.json",      "merges.txt",
    "chat_template.json",      "chat_template.jinja"};
constexpr const char* kAdapterSubdir = "adapter";

struct DtypeSpelling {
  std::string_view short_name, torch_name;
  ExportDtype dtype;
};
constexpr std::array<DtypeSpelling, 4> kDtypes = {{
    {"auto", "auto", ExportDtype::kAuto},
    {"f32", "float32", ExportDtype::kFloat32},
    {"bf16", "bfloat16", ExportDtype::kBFloat16},
    {"f16", "float16", ExportDtype::kFloat16},
}};

at::ScalarType scalar_type(ExportDtype dtype) {
  switch (dtype) {
    case ExportDtype::kBFloat16:
      return at::kBFloat16;
    case ExportDtype::kFloat16:
      return at::kHalf;
    default:
      return at::kFloat;
  }
}

ExportDtype from_stored(SafetensorsDtype dtype) {
  switch (dtype) {
    case SafetensorsDtype::kBF16:
      return ExportDtype::kBFloat16;
    case SafetensorsDtype::kF16:
      return ExportDtype::kFloat16;
    default:  // CheckpointWeights admits F32, F16 and BF16 only
      return ExportDtype::kFloat32;
  }
}

const OwnedDirKind& export_dir_kind() {
  static const OwnedDirKind kind{.program = "export",
                                 .kind = "model directory",
                                 .marker = kExportMarker,
                                 .example = "exported",
                                 .owns =
                                     [](std::string_view name) {
                                       return name == kExportMarker || name == "config.json" ||
                                              name == kAdapterSubdir || is_weight_file_name(name) ||
                                              std::find(kCopiedFiles.begin(), kCopiedFiles.end(),
                                                        name) != kCopiedFiles.end();
                                     },
                                 .unmarked = nullptr};
  return kind;
}

// Refuses an output that is, contains or lies inside an input directory:
// writing it would change the input, and replacing it would delete it.
void refuse_overlap(const fs::path& out, const std::string& out_shown, const fs::path& input,
                    std::string_view what) {
  const fs::path in = resolved_path(input);
  if (path_within(out, in)) {
    throw std::runtime_error(fmt::format(
        "output directory {} {} the {} {}: export writes a new directory; choose one outside "
        "it",
        out_shown, out == in ? "is" : "is inside", what, shown_path(input, in)));
  }
  if (path_within(in, out)) {
    throw std::runtime_error(fmt::format(
        "output directory {} contains the {} {}: export replaces the whole output directory, so "
        "the {} would be deleted with it; choose a directory that does not hold it",
        out_shown, what, shown_path(input, in), what));
  }
}

// The resolved output, once every check on where it is has passed.
fs::path checked_output(const ExportOptions& o) {
  if (o.out.empty()) throw std::runtime_error("export: no output directory given");
  const fs::path out = resolved_path(o.out);
  const std::string shown = shown_path(o.out, out);
  refuse_current_dir_within(out, shown, export_dir_kind());
  refuse_overlap(out, shown, o.model, "base model");
  refuse_overlap(out, shown, o.adapter, "adapter");
  refuse_unless_replaceable(out, shown, export_dir_kind());
  return out;
}

// Refuses an adapter module the base has no [out, in] weight for.
void check_adapter_fits(const PeftAdapter& adapter, const CheckpointWeights& weights,
                        const fs::path& adapter_dir) {
  for (const auto& [path, w] : adapter.modules) {
    const std::string name = path + ".weight";
    if (!weights.contains(name)) {
      throw std::runtime_error(fmt::format(
          "adapter '{}': module '{}' is not in the base model (no tensor '{}' in '{}'): an "
          "adapter for another base?",
          adapter_dir.string(), path, name, weights.source().string()));
    }
    const std::vector<int64_t>& shape = weights.info(name).shape;
    if (shape.size() != 2 || w.a.size(1) != shape[1] || w.b.size(0) != shape[0]) {
      throw std::runtime_error(fmt::format(
          "adapter '{}': module '{}' has A {} and B {}, but the base's '{}' in '{}' is {}: an "
          "adapter for another base?",
          adapter_dir.string(), path, c10::str(w.a.sizes()), c10::str(w.b.sizes()), name,
          weights.file_of(name).string(), c10::str(c10::IntArrayRef(shape))));
    }
  }
}

// auto: the dtype the base stores its projections in, which must be one.
ExportDtype resolve_dtype(ExportDtype wanted, const CheckpointWeights& weights) {
  if (wanted != ExportDtype::kAuto) return wanted;
  std::map<SafetensorsDtype, std::string> seen;  // dtype -> one projection stored so
  for (const std::string& name : weights.names()) {
    if (name.ends_with("_proj.weight")) seen.emplace(weights.info(name).dtype, name);
  }
  if (seen.empty()) {
    throw std::runtime_error(fmt::format(
        "--dtype auto: '{}' holds no projection weights (*_proj.weight) to take the dtype from; "
        "give --dtype f32, bf16 or f16",
        weights.source().string()));
  }
  if (seen.size() > 1) {
    std::string listing;
    for (const auto& [dtype, name] : seen) {
      listing += fmt::format("{}{} ('{}')", listing.empty() ? "" : ", ",
                             safetensors_dtype_name(dtype), name);
    }
    throw std::runtime_error(
        fmt::format("--dtype auto: the projections of '{}' are stored in several dtypes: {}; "
                    "give --dtype f32, bf16 or f16",
                    weights.source().string(), listing));
  }
  return from_stored(seen.begin()->first);
}

// The base's tensor names in the order it stores them (file, then offset):
// the layout save_pretrained gave it, kept across the export.
std::vector<std::string> stored_order(const CheckpointWeights& weights) {
  std::map<fs::path, size_t> file_index;
  for (const fs::path& file : weights.files()) file_index.emplace(file, file_index.size());
  std::vector<std::string> names = weights.names();
  const auto key = [&](const std::string& name) {
    return std::make_tuple(file_index.at(weights.file_of(name)), weights.info(name).begin);
  };
  std::sort(names.begin(), names.end(),
            [&](const std::string& a, const std::string& b) { return key(a) < key(b); });
  return names;
}

// Refuses a written tensor with values that are not finite: a float16
// rounding past 65504, or a merge that overflowed.
void require_representable(const at::Tensor& written, const std::string& name, ExportDtype dtype) {
  const int64_t bad = written.numel() - at::isfinite(written).sum().item<int64_t>();
  if (bad == 0) return;
  throw std::runtime_error(fmt::format(
      "tensor '{}' has {} non-finite value(s) once written as {}{}", name, bad,
      export_dtype_name(dtype),
      dtype == ExportDtype::kFloat16 ? " (float16 holds at most 65504): export as bf16 or f32"
                                     : ": check the base and the adapter"));
}

// The weights to write, each made when its shard is written: the stored
// tensor in `dtype`, or with `merge`, W + scaling·B·A in float32 first.
std::vector<PendingTensor> pending_weights(const CheckpointWeights& weights,
                                           const PeftAdapter* merge, ExportDtype dtype) {
  const at::ScalarType target = scalar_type(dtype);
  const int64_t element = static_cast<int64_t>(c10::elementSize(target));
  std::vector<PendingTensor> pending;
  for (const std::string& name : stored_order(weights)) {
    const LoraWeights* lora = nullptr;
    if (merge != nullptr && name.ends_with(".weight")) {
      const auto it = merge->modules.find(name.substr(0, name.size() - std::strlen(".weight")));
      if (it != merge->modules.end()) lora = &it->second;
    }
    auto make = [&weights, name, lora, target, dtype] {
      const at::Tensor stored = weights.stored(name);
      at::Tensor value = stored;
      if (lora != nullptr) {
        // [out, in]: LoraLinearImpl::merged_weight's sum, so the export holds
        // merge_adapter's weights bit for bit before rounding.
        value = stored.to(at::kFloat) + at::matmul(lora->b, lora->a) * lora->scaling;
      }
      const at::Tensor written = value.to(target);
      // Unchanged stored bytes were checked by whoever wrote the base.
      if (lora != nullptr || target != stored.scalar_type()) {
        require_representable(written, name, dtype);
      }
      return written;
    };
    pending.push_back({name, weights.info(name).numel() * element, std::move(make)});
  }
  return pending;
}

// Writes the weights into `dir` with a progress line; returns the bytes written.
int64_t write_weights(const fs::path& dir, std::vector<PendingTensor> pending,
                      int64_t max_shard_bytes, bool show_progress) {
  int64_t total = 0;
  for (const PendingTensor& p : pending) total += p.bytes;
  Progress progress({.label = "export",
                     .total_bytes = static_cast<uint64_t>(total),
                     .enabled = show_progress,
                     .items = "tensors"});
  int64_t done = 0, tensors = 0;
  for (PendingTensor& p : pending) {
    p.make = [make = std::move(p.make), bytes = p.bytes, &progress, &done, &tensors] {
      at::Tensor made = make();
      done += bytes;
      progress.update(static_cast<uint64_t>(done), static_cast<uint64_t>(++tensors));
      return made;
    };
  }
  save_checkpoint_weights(dir, pending, max_shard_bytes, SafetensorsFloats::kAsGiven);
  progress.finish();
  return total;
}

// config.json as the base has it, with torch_dtype naming what was written.
std::string exported_config(const fs::path& model, ExportDtype dtype) {
  const fs::path path = model / "config.json";
  nlohmann::ordered_json config =
      nlohmann::ordered_json::parse(read_whole_file(path, "base model config"), nullptr, false);
  if (!config.is_object()) {
    throw std::runtime_error(fmt::format("'{}' is not a JSON object", path.string()));
  }
  config["torch_dtype"] = export_dtype_name(dtype);
  return config.dump(2) + "\n";
}

void copy_base_files(const fs::path& model, const fs::path& dir) {
  for (const char* name : kCopiedFiles) {
    const fs::path from = model / name;
    if (fs::exists(from)) write_file_atomic(dir / name, read_whole_file(from, "base model file"));
  }
}

std::vector<std::string> weight_files_of(const fs::path& dir) {
  std::vector<std::string> files;
  for (const fs::path& file : CheckpointWeights::open(dir).files()) {
    files.push_back(file.filename().string());
  }
  return files;
}

}  // namespace

ExportDtype parse_export_dtype(std::string_view text) {
  for (const DtypeSpelling& d : kDtypes) {
    if (text == d.short_name || text == d.torch_name) return d.dtype;
  }
  throw std::invalid_argument(fmt::format(
      "dtype '{}' is not one export writes: auto, f32 (float32), bf16 (bfloat16) or f16 "
      "(float16)",
      text));
}

const char* export_dtype_name(ExportDtype dtype) {
  for (const DtypeSpelling& d : kDtypes) {
    if (d.dtype == dtype) return d.torch_name.data();
  }
  return "?";
}

ExportResult export_model(const ExportOptions& o) {
  if (o.adapter.empty()) throw std::runtime_error("export: no adapter directory given");
  if (o.max_shard_bytes <= 0) {
    throw std::runtime_error(
        fmt::format("export: the shard size must be positive, not {}", o.max_shard_bytes));
  }
  ExportResult result;
  result.out = checked_output(o);
  load_llama_config(o.model / "config.json");  // an architecture vitrine runs, or refused by name
  const CheckpointWeights weights = CheckpointWeights::open(o.model);
  PeftAdapter adapter = load_peft_adapter(o.adapter);
  check_adapter_fits(adapter, weights, o.adapter);
  result.dtype = resolve_dtype(o.dtype, weights);
  result.adapter_modules = static_cast<int64_t>(adapter.modules.size());

  at::NoGradGuard no_grad;
  StagingDir staging(result.out);
  result.weight_bytes = write_weights(
      staging.path(), pending_weights(weights, o.merge ? &adapter : nullptr, result.dtype),
      o.max_shard_bytes, o.progress);
  write_file_atomic(staging.path() / "config.json", exported_config(o.model, result.dtype));
  copy_base_files(o.model, staging.path());
  if (!o.merge) {
    adapter.config.base_model_name_or_path = "..";  // OUT, seen from OUT/adapter
    save_peft_adapter(staging.path() / kAdapterSubdir, adapter);
  }
  write_file_atomic(
      staging.path() / kExportMarker,
      fmt::format("A model directory written by `vitrine export` (base '{}', adapter "
                  "'{}', {}, {}): the next export into it replaces it whole.\n",
                  o.model.string(), o.adapter.string(),
                  o.merge ? "merged" : "adapter beside the base", export_dtype_name(result.dtype)));
  result.weight_files = weight_files_of(staging.path());
  // Again: the export may have taken minutes, in which OUT may have changed.
  refuse_unless_replaceable(result.out, shown_path(o.out, result.out), export_dir_kind());
  staging.commit();
  return result;
}

}  // namespace vitrine::models
