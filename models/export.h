// `vitrine export`: a base checkpoint and a PEFT LoRA adapter written out as
// a Hugging Face model directory that transformers, vLLM and llama.cpp's
// converter load as they load a Hub download: either the adapter merged
// into the weights, or the base with the adapter beside it in OUT/adapter;
// in float32, bfloat16 or float16; in one model.safetensors or in shards
// listed by model.safetensors.index.json.
//
// The base is read through CheckpointWeights (mapped, in its stored dtype)
// and written shard by shard, so memory holds one shard in the written
// dtype, never a float32 copy of the whole model. Merging computes
// W + scaling·B·A in float32 from the stored W, in LoraLinear's order of
// operations, then rounds once to the written dtype (round to nearest even):
// the weights merge_adapter makes in memory, rounded.
//
// OUT is built in a staging directory beside it and renamed into place, so a
// refusal or a crash leaves no OUT and no half-written file. OUT may be
// absent, empty, or an earlier export (it carries kExportMarker and nothing
// but files an export writes), which is then replaced whole; anything else
// is refused, as is an OUT that is, contains or lies inside the base or the
// adapter directory. Not goals: pytorch_model.bin, quantized dtypes, several
// adapters in one export, tied-embedding adapters (PEFT's lora_embedding_*).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine::models {

enum class ExportDtype { kAuto, kFloat32, kBFloat16, kFloat16 };

// "auto", "f32" / "float32", "bf16" / "bfloat16", "f16" / "float16".
// Throws std::invalid_argument naming `text` and the accepted names.
ExportDtype parse_export_dtype(std::string_view text);
// config.json's torch_dtype spelling: "float32", "bfloat16", "float16" ("auto" for kAuto).
const char* export_dtype_name(ExportDtype dtype);

// The file that marks a directory as written by export (so the next export
// may replace it); a line of provenance, ignored by every loader.
inline constexpr const char* kExportMarker = ".vitrine-export";
// The shard size transformers' save_pretrained uses by default ("5GB").
inline constexpr int64_t kDefaultMaxShardBytes = 5'000'000'000;

struct ExportOptions {
  std::filesystem::path model;    // the base: a Hugging Face model directory
  std::filesystem::path adapter;  // a PEFT LoRA adapter directory made for `model`
  std::filesystem::path out;      // the directory to write: absent, empty or an earlier export
  bool merge = false;  // fold the adapter into the weights; false writes the base unchanged
                       // and the adapter as OUT/adapter (base_model_name_or_path "..")
  ExportDtype dtype = ExportDtype::kAuto;  // of every weight; auto = the stored dtype of the
                                           // base's projections (no rounding of the base)
  int64_t max_shard_bytes = kDefaultMaxShardBytes;  // weights beyond this go into shards of at
                                                    // most this size (a larger tensor alone)
  bool progress = true;                             // a progress line on stderr (off in tests)
};

struct ExportResult {
  std::filesystem::path out;               // where it went, resolved
  ExportDtype dtype = ExportDtype::kAuto;  // the dtype written (never kAuto)
  std::vector<std::string> weight_files;   // model.safetensors, or the index then the shards
  int64_t weight_bytes = 0;                // tensor data written
  int64_t adapter_modules = 0;             // projections merged, or modules in OUT/adapter
};

// Writes the export. Throws std::runtime_error naming the path (and tensor
// or module) when OUT may not be written, the base or adapter cannot be
// read, the adapter does not fit the base ("...: an adapter for another
// base?"), `auto` finds projections stored in several dtypes, or a weight
// does not fit the written dtype (float16 overflows past 65504); nothing is
// written then.
ExportResult export_model(const ExportOptions& options);

}  // namespace vitrine::models
