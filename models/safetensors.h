// Reads and writes .safetensors files (the Hugging Face tensor container).
//
// Layout: 8-byte little-endian header length N, N bytes of JSON header
// ({"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets"}}),
// then the data section; offsets are relative to its start.
//
// Reading memory-maps the file (private, copy-on-write: a write into a
// borrowed tensor never reaches the file and never faults) and validates the
// header strictly before any tensor is touched: size bounds, JSON shape,
// dtype, shape x dtype size == byte count, offsets inside the data section
// and not overlapping, string-to-string metadata. Errors name the file and
// the tensor or key. get() returns float32 for floating dtypes (F32 borrowed
// zero-copy from the mapping when aligned; F16/BF16/F64 converted) and int64
// for integer dtypes; the mapping lives as long as any tensor borrowed from it.
//
// Writing stores float32 and int64 tensors (other floating dtypes are
// converted to float32), names sorted in the header, header padded with
// spaces to a multiple of 8 like the reference implementation, written to a
// temporary file and renamed (vitrine::AtomicFile).
//
// Not goals: big-endian hosts, F8/U16/U32/U64/BOOL dtypes, sharded
// checkpoints (model.safetensors.index.json is the caller's business).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace vitrine::models {

// Storage dtypes this reader understands, by their safetensors names.
enum class SafetensorsDtype { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8 };

// "F32", "BF16", ...
const char* safetensors_dtype_name(SafetensorsDtype dtype);
// Bytes per element: 8, 4, 2, 2, 8, 4, 2, 1, 1.
int64_t safetensors_dtype_size(SafetensorsDtype dtype);

struct SafetensorsTensorInfo {
  SafetensorsDtype dtype = SafetensorsDtype::kF32;  // storage dtype in the file
  std::vector<int64_t> shape;                       // [] for a scalar
  uint64_t begin = 0;                               // byte offset in the data section
  uint64_t end = 0;                                 // one past the last byte
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps `path` and validates its header. Throws std::runtime_error naming the
  // file (and tensor) when the file cannot be read or is malformed.
  static SafetensorsFile open(const std::filesystem::path& path);

  // Tensor names, sorted.
  std::vector<std::string> names() const;
  size_t size() const { return tensors_.size(); }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws std::runtime_error naming the file and tensor when absent.
  const SafetensorsTensorInfo& info(const std::string& name) const;
  // The tensor on CPU: float32 for F64/F32/F16/BF16, int64 for integer dtypes.
  // Aligned F32/I64 data is borrowed from the mapping (no copy): two get()
  // calls of one name share memory, so clone() before an in-place change that
  // must not be seen by the other. Thread-safe.
  at::Tensor get(const std::string& name) const;
  // The tensor on CPU in its stored dtype (BF16 as at::kBFloat16, ...),
  // borrowed from the mapping when its bytes are aligned for the dtype and
  // copied otherwise; the same sharing rule as get(). Thread-safe.
  at::Tensor stored(const std::string& name) const;
  // Drops the mapped pages that hold only `name`'s bytes from this
  // process's memory (they stay in the page cache, and a later read maps
  // them again): after a loader has copied or packed a tensor, its file
  // pages need not count against the process while the rest loads.
  void release(const std::string& name) const;
  // The "__metadata__" map ({"format": "pt"} for files written by torch).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  struct Mapping;
  SafetensorsFile() = default;

  std::filesystem::path path_;
  std::shared_ptr<Mapping> mapping_;     // the whole file, MAP_PRIVATE
  const unsigned char* data_ = nullptr;  // start of the data section inside mapping_
  uint64_t data_size_ = 0;
  std::map<std::string, SafetensorsTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Throws std::runtime_error naming the tensor and file when a floating
// tensor holds NaN or Inf: weights like that only ever come from a damaged
// or diverged file, and one NaN poisons every answer computed with it.
// Integer tensors pass. Reads the data once, in place (no temporary).
void require_finite(const at::Tensor& tensor, const std::string& name,
                    const std::filesystem::path& file);

// Validates a header (the JSON text after the 8-byte length) against a data
// section of `data_size` bytes; `path` only names the file in errors. Exposed
// for tests and for readers of non-file buffers.
void parse_safetensors_header(const std::string& header_json, uint64_t data_size,
                              const std::string& path,
                              std::map<std::string, SafetensorsTensorInfo>* tensors,
                              std::map<std::string, std::string>* metadata);

// The largest header accepted (the reference implementation's limit).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// How save_safetensors stores floating tensors.
enum class SafetensorsFloats {
  kF32,     // every floating tensor as F32 (what the float32 runtime reads back exactly)
  kAsGiven  // float16 / bfloat16 / float64 keep their dtype (F16, BF16, F64), as the Hub ships
};

// Writes `tensors` to `path` atomically. float32 and int64 tensors are stored
// as F32 and I64; float64/float16/bfloat16 as `floats` says; any other
// dtype, an empty or duplicate name, or "__metadata__" as a name throws
// std::invalid_argument. Tensors may live on any device and be non-contiguous.
void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}},
                      SafetensorsFloats floats = SafetensorsFloats::kF32);

}  // namespace vitrine::models
