#include "models/checkpoint_weights.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "common/atomic_output.h"
#include "common/text_file.h"

namespace vitrine::models {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The index's weight_map: tensor name -> shard file name (in the index's folder).
std::map<std::string, std::string> read_weight_map(const fs::path& index) {
  const json j = json::parse(read_whole_file(index, "checkpoint index"), nullptr,
                             /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    throw std::runtime_error(
        fmt::format("'{}' is not valid JSON: a truncated download?", index.string()));
  }
  if (!j.is_object() || !j.contains("weight_map") || !j.at("weight_map").is_object()) {
    throw std::runtime_error(fmt::format(
        "'{}' has no \"weight_map\" object: not a safetensors shard index?", index.string()));
  }
  std::map<std::string, std::string> map;
  for (const auto& [name, shard] : j.at("weight_map").items()) {
    const fs::path file = shard.is_string() ? fs::path(shard.get<std::string>()) : fs::path();
    // A shard is a file beside the index: a path could read outside the model directory.
    if (file.empty() || file.has_parent_path() || file == "." || file == "..") {
      throw std::runtime_error(fmt::format(
          "'{}': tensor '{}' is mapped to {}, not the name of a file in the model directory",
          index.string(), name, shard.dump()));
    }
    map.emplace(name, file.string());
  }
  if (map.empty()) {
    throw std::runtime_error(fmt::format("'{}': \"weight_map\" is empty", index.string()));
  }
  return map;
}

bool is_weight_dtype(SafetensorsDtype dtype) {
  return dtype == SafetensorsDtype::kF32 || dtype == SafetensorsDtype::kF16 ||
         dtype == SafetensorsDtype::kBF16;
}

// Bytes `tensor` takes once save_safetensors has stored it under `floats`.
int64_t stored_bytes(const at::Tensor& tensor, SafetensorsFloats floats) {
  const bool floating = at::isFloatingType(tensor.scalar_type());
  const int64_t element = floating && floats == SafetensorsFloats::kF32
                              ? 4
                              : static_cast<int64_t>(tensor.element_size());
  return tensor.numel() * element;
}

// Removes the weight files of `dir` that are not in `keep`: what another
// layout (or shard count) left, which a reader would otherwise mix in.
void remove_stale_weight_files(const fs::path& dir, const std::set<std::string>& keep) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (is_weight_file_name(name) && keep.count(name) == 0) fs::remove(entry.path());
  }
}

}  // namespace

bool is_weight_file_name(std::string_view name) {
  const bool shard = name.starts_with("model-") && name.find("-of-") != std::string_view::npos &&
                     name.ends_with(".safetensors");
  return shard || name == kSingleWeightsFile || name == kWeightsIndexFile;
}

CheckpointWeights CheckpointWeights::open(const fs::path& dir) {
  CheckpointWeights w;
  const fs::path single = dir / kSingleWeightsFile, index = dir / kWeightsIndexFile;
  if (fs::exists(single)) {
    w.source_ = single;
    w.add_file(single);
  } else if (fs::exists(index)) {
    w.source_ = index;
    w.open_shards(read_weight_map(index));
  } else {
    throw std::runtime_error(
        fmt::format("no {} or {} in '{}': not a Hugging Face model directory?{}",
                    kSingleWeightsFile, kWeightsIndexFile, dir.string(),
                    fs::exists(dir / "pytorch_model.bin")
                        ? " (pytorch_model.bin is not read: convert it to safetensors)"
                        : ""));
  }
  w.check_dtypes();
  return w;
}

void CheckpointWeights::add_file(const fs::path& path) {
  files_.push_back(SafetensorsFile::open(path));
  for (const std::string& name : files_.back().names()) {
    const auto [it, fresh] = owner_.emplace(name, files_.size() - 1);
    if (!fresh) {
      throw std::runtime_error(fmt::format(
          "tensor '{}' is in two shards, '{}' and '{}': shards of different checkpoints mixed?",
          name, files_[it->second].path().string(), path.string()));
    }
  }
}

void CheckpointWeights::open_shards(const std::map<std::string, std::string>& weight_map) {
  const fs::path dir = source_.parent_path();
  std::map<std::string, std::string> listed;  // shard -> one tensor the index puts there
  for (const auto& [name, shard] : weight_map) listed.emplace(shard, name);
  for (const auto& [shard, example] : listed) {
    if (!fs::exists(dir / shard)) {
      throw std::runtime_error(fmt::format(
          "shard '{}' is missing from '{}' ('{}' lists it for tensor '{}'...): an incomplete "
          "download?",
          shard, dir.string(), source_.string(), example));
    }
    add_file(dir / shard);
  }
  for (const auto& [name, shard] : weight_map) {
    const auto it = owner_.find(name);
    if (it == owner_.end() || files_[it->second].path().filename() != shard) {
      throw std::runtime_error(fmt::format(
          "tensor '{}' is listed in '{}' under shard '{}', which does not hold it{}: index and "
          "shards of different checkpoints?",
          name, source_.string(), shard,
          it == owner_.end() ? "" : " (it is in '" + files_[it->second].path().string() + "')"));
    }
  }
  for (const auto& [name, i] : owner_) {
    if (weight_map.count(name) == 0) {
      throw std::runtime_error(
          fmt::format("tensor '{}' in '{}' is not listed in '{}': a stale index?", name,
                      files_[i].path().string(), source_.string()));
    }
  }
}

void CheckpointWeights::check_dtypes() const {
  for (const auto& [name, i] : owner_) {
    const SafetensorsDtype dtype = files_[i].info(name).dtype;
    if (!is_weight_dtype(dtype)) {
      throw std::runtime_error(fmt::format(
          "tensor '{}' in '{}' is stored as {}: model weights must be F32, F16 or BF16 (quantized "
          "or integer checkpoints are not supported)",
          name, files_[i].path().string(), safetensors_dtype_name(dtype)));
    }
  }
}

std::vector<std::string> CheckpointWeights::names() const {
  std::vector<std::string> out;
  out.reserve(owner_.size());
  for (const auto& [name, i] : owner_) out.push_back(name);
  return out;
}

const SafetensorsFile& CheckpointWeights::file(const std::string& name) const {
  const auto it = owner_.find(name);
  if (it == owner_.end()) {
    throw std::runtime_error(fmt::format("tensor '{}' not in '{}': wrong checkpoint or key name?",
                                         name, source_.string()));
  }
  return files_[it->second];
}

const SafetensorsTensorInfo& CheckpointWeights::info(const std::string& name) const {
  return file(name).info(name);
}

const fs::path& CheckpointWeights::file_of(const std::string& name) const {
  return file(name).path();
}

at::Tensor CheckpointWeights::stored(const std::string& name) const {
  return file(name).stored(name);
}

void CheckpointWeights::release(const std::string& name) const {
  file(name).release(name);
}

at::Tensor CheckpointWeights::get(const std::string& name) const {
  return file(name).get(name);
}

std::vector<fs::path> CheckpointWeights::files() const {
  std::vector<fs::path> out;
  if (source_.filename() == kWeightsIndexFile) out.push_back(source_);
  for (const SafetensorsFile& f : files_) out.push_back(f.path());
  return out;
}

void save_checkpoint_weights(const fs::path& dir,
                             const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                             int64_t max_shard_bytes, SafetensorsFloats floats) {
  std::vector<PendingTensor> pending;
  pending.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    pending.push_back({name, stored_bytes(tensor, floats), [tensor] { return tensor; }});
  }
  save_checkpoint_weights(dir, pending, max_shard_bytes, floats);
}

void save_checkpoint_weights(const fs::path& dir, const std::vector<PendingTensor>& tensors,
                             int64_t max_shard_bytes, SafetensorsFloats floats) {
  if (max_shard_bytes <= 0) {
    throw std::invalid_argument(fmt::format(
        "save_checkpoint_weights: max_shard_bytes {} must be positive", max_shard_bytes));
  }
  // In order, a new shard whenever the next tensor would overflow this one
  // (save_pretrained's rule); the sizes are known before any tensor is made.
  std::vector<std::vector<const PendingTensor*>> shards(1);
  int64_t shard_bytes = 0, total_bytes = 0;
  for (const PendingTensor& item : tensors) {
    if (shard_bytes > 0 && shard_bytes + item.bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(&item);
    shard_bytes += item.bytes;
    total_bytes += item.bytes;
  }
  // Makes one shard's tensors, each checked against the size it was planned with.
  const auto make_shard = [floats](const std::vector<const PendingTensor*>& shard) {
    std::vector<std::pair<std::string, at::Tensor>> made;
    for (const PendingTensor* item : shard) {
      made.emplace_back(item->name, item->make());
      if (stored_bytes(made.back().second, floats) != item->bytes) {
        throw std::logic_error(fmt::format(
            "save_checkpoint_weights: tensor '{}' was planned as {} bytes but made as {}",
            item->name, item->bytes, stored_bytes(made.back().second, floats)));
      }
    }
    return made;
  };
  fs::create_directories(dir);
  const std::map<std::string, std::string> metadata{{"format", "pt"}};
  if (shards.size() == 1) {
    save_safetensors(dir / kSingleWeightsFile, make_shard(shards[0]), metadata, floats);
    remove_stale_weight_files(dir, {kSingleWeightsFile});
    return;
  }
  // Stale files go last: an old model.safetensors, which readers prefer, is
  // removed only once the new set is complete.
  json weight_map = json::object();
  std::set<std::string> written{kWeightsIndexFile};
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string name =
        fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
    save_safetensors(dir / name, make_shard(shards[i]), metadata, floats);
    for (const PendingTensor* item : shards[i]) weight_map[item->name] = name;
    written.insert(name);
  }
  const json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  write_file_atomic(dir / kWeightsIndexFile, index.dump(2) + "\n");
  remove_stale_weight_files(dir, written);
}

}  // namespace vitrine::models
