// The weights of a Hugging Face model directory as one set of named tensors,
// whether it ships them in one model.safetensors or in shards listed by
// model.safetensors.index.json (as Llama-3.2-3B, Qwen2.5-7B and Mistral-7B
// do).
//
// Every file is memory-mapped, not read: opening costs the headers, and a
// tensor is handed out as a view of the mapped bytes in its stored dtype
// (stored()), so the caller decides whether and where it becomes float32.
// load_llama converts straight into its weight arena; a base kept in bf16
// can hold the BF16 views and never make a float32 copy.
//
// Opening checks the set as a whole before any tensor is read, and every
// error names the file and the tensor: an index that is not valid JSON or
// has no weight_map, a shard it lists that is missing, a tensor it lists
// that its shard does not hold, a tensor in two shards (or in a shard the
// index does not list it under), a weight whose dtype is not F32, F16 or
// BF16. When a directory has both layouts, model.safetensors wins, as in
// transformers.
//
// Not goals: pytorch_model.bin (pickles), GGUF, quantized dtypes.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "models/safetensors.h"

namespace vitrine::models {

inline constexpr const char* kSingleWeightsFile = "model.safetensors";
inline constexpr const char* kWeightsIndexFile = "model.safetensors.index.json";

// model.safetensors, model.safetensors.index.json or a shard's name
// (model-00001-of-00003.safetensors): what save_checkpoint_weights may write.
bool is_weight_file_name(std::string_view name);

class CheckpointWeights {
 public:
  // Maps the weights of model directory `dir` and validates them (see
  // above). Throws std::runtime_error naming the file and tensor.
  static CheckpointWeights open(const std::filesystem::path& dir);

  // Tensor names across all files, sorted.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return owner_.count(name) != 0; }
  // Throws std::runtime_error naming source() when `name` is absent.
  const SafetensorsTensorInfo& info(const std::string& name) const;
  // The file (model.safetensors or a shard) holding `name`.
  const std::filesystem::path& file_of(const std::string& name) const;
  // `name` in its stored dtype, a view of the mapping when aligned (see
  // SafetensorsFile::stored); the mapping lives as long as the view.
  at::Tensor stored(const std::string& name) const;
  // SafetensorsFile::release of the file holding `name`.
  void release(const std::string& name) const;
  // `name` as float32 (a converted copy unless stored F32 and aligned).
  at::Tensor get(const std::string& name) const;

  // What errors about the whole set name: model.safetensors or the index.
  const std::filesystem::path& source() const { return source_; }
  // Every file read, the index first when sharded: what a fingerprint of
  // the weights covers.
  std::vector<std::filesystem::path> files() const;
  bool sharded() const { return files_.size() > 1 || source_.filename() == kWeightsIndexFile; }

 private:
  CheckpointWeights() = default;
  const SafetensorsFile& file(const std::string& name) const;
  // Adds `path`'s tensors, refusing one another file already holds.
  void add_file(const std::filesystem::path& path);
  // Maps the shards `weight_map` (tensor -> shard file) names and checks
  // that they hold exactly what it says.
  void open_shards(const std::map<std::string, std::string>& weight_map);
  // Refuses a tensor whose dtype is not F32, F16 or BF16.
  void check_dtypes() const;

  std::filesystem::path source_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> owner_;  // tensor -> index in files_
};

// Writes `tensors` (in this order) as a Hugging Face directory would hold
// them: one model.safetensors when they fit in `max_shard_bytes`, otherwise
// shards model-0000i-of-0000n.safetensors of at most that size (a larger
// tensor gets a shard alone) and model.safetensors.index.json, as
// save_pretrained lays them out. Files of the other layout are removed so
// the directory holds one set. Each file is written atomically.
void save_checkpoint_weights(const std::filesystem::path& dir,
                             const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                             int64_t max_shard_bytes,
                             SafetensorsFloats floats = SafetensorsFloats::kAsGiven);

// A tensor for the overload below, made only when its shard is written: a
// conversion or merge then holds one shard at a time in the written dtype,
// never the whole model.
struct PendingTensor {
  std::string name;
  int64_t bytes = 0;                 // its size as stored under `floats` (numel x element size)
  std::function<at::Tensor()> make;  // called once, when its shard is written
};

// The same layout, from tensors made shard by shard. A made tensor whose
// stored size is not `bytes` throws std::logic_error (the shards and the
// index's total_size were planned with it).
void save_checkpoint_weights(const std::filesystem::path& dir,
                             const std::vector<PendingTensor>& tensors, int64_t max_shard_bytes,
                             SafetensorsFloats floats = SafetensorsFloats::kAsGiven);

}  // namespace vitrine::models
