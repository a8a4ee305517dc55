#include "models/safetensors.h"

// Narrow ATen headers: ATen/ATen.h (and ATen/ops/empty.h) do not compile with
// clang in C++20 against libtorch 1.13, and the fuzz build (tests/fuzz/) uses clang.
#include <ATen/EmptyTensor.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <tuple>

#include "common/atomic_output.h"

namespace vitrine::models {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; big-endian hosts are not supported");

namespace {

constexpr uint64_t kLengthPrefixBytes = 8;

struct DtypeName {
  const char* name;
  SafetensorsDtype dtype;
};
constexpr DtypeName kDtypeNames[] = {
    {"F64", SafetensorsDtype::kF64}, {"F32", SafetensorsDtype::kF32},
    {"F16", SafetensorsDtype::kF16}, {"BF16", SafetensorsDtype::kBF16},
    {"I64", SafetensorsDtype::kI64}, {"I32", SafetensorsDtype::kI32},
    {"I16", SafetensorsDtype::kI16}, {"I8", SafetensorsDtype::kI8},
    {"U8", SafetensorsDtype::kU8},
};

at::ScalarType storage_scalar_type(SafetensorsDtype dtype) {
  switch (dtype) {
    case SafetensorsDtype::kF64:
      return at::kDouble;
    case SafetensorsDtype::kF32:
      return at::kFloat;
    case SafetensorsDtype::kF16:
      return at::kHalf;
    case SafetensorsDtype::kBF16:
      return at::kBFloat16;
    case SafetensorsDtype::kI64:
      return at::kLong;
    case SafetensorsDtype::kI32:
      return at::kInt;
    case SafetensorsDtype::kI16:
      return at::kShort;
    case SafetensorsDtype::kI8:
      return at::kChar;
    case SafetensorsDtype::kU8:
      return at::kByte;
  }
  throw std::logic_error("safetensors: unhandled dtype");
}

bool is_floating(SafetensorsDtype dtype) {
  return dtype == SafetensorsDtype::kF64 || dtype == SafetensorsDtype::kF32 ||
         dtype == SafetensorsDtype::kF16 || dtype == SafetensorsDtype::kBF16;
}

std::string where(const std::string& path, const std::string& name) {
  return path + ": tensor '" + name + "'";
}

// The safetensors name of a floating scalar type save_safetensors keeps.
const char* float_dtype_name(at::ScalarType type) {
  switch (type) {
    case at::kDouble:
      return "F64";
    case at::kHalf:
      return "F16";
    case at::kBFloat16:
      return "BF16";
    default:
      return "F32";
  }
}

// One tensor to write.
struct SaveEntry {
  std::string name;
  at::Tensor data;    // contiguous, CPU, in the dtype written
  const char* dtype;  // "F32", "I64", or with SafetensorsFloats::kAsGiven "F16", "BF16", "F64"
};

// The header by hand, as the reference writer lays it out: "__metadata__"
// first, then the tensors in order, offsets packed; padded with spaces to a
// multiple of 8. Throws nlohmann::json::exception on invalid UTF-8.
std::string header_json(const std::vector<SaveEntry>& entries,
                        const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":" + nlohmann::json(metadata).dump();
  }
  uint64_t offset = 0;
  for (const SaveEntry& e : entries) {
    const uint64_t nbytes = static_cast<uint64_t>(e.data.numel()) * e.data.element_size();
    nlohmann::json shape = nlohmann::json::array();
    for (int64_t d : e.data.sizes()) shape.push_back(d);
    if (header.size() > 1) header += ",";
    header += nlohmann::json(e.name).dump() + ":{\"dtype\":\"" + e.dtype +
              "\",\"shape\":" + shape.dump() + ",\"data_offsets\":[" + std::to_string(offset) +
              "," + std::to_string(offset + nbytes) + "]}";
    offset += nbytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  return header;
}

}  // namespace

const char* safetensors_dtype_name(SafetensorsDtype dtype) {
  for (const auto& entry : kDtypeNames) {
    if (entry.dtype == dtype) return entry.name;
  }
  return "?";
}

int64_t safetensors_dtype_size(SafetensorsDtype dtype) {
  return static_cast<int64_t>(c10::elementSize(storage_scalar_type(dtype)));
}

int64_t SafetensorsTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// The read-only view of the whole file; unmapped when the last holder goes.
struct SafetensorsFile::Mapping {
  void* address = nullptr;
  size_t length = 0;
  ~Mapping() {
    if (address != nullptr) ::munmap(address, length);
  }
};

void parse_safetensors_header(const std::string& header_json, uint64_t data_size,
                              const std::string& path,
                              std::map<std::string, SafetensorsTensorInfo>* tensors,
                              std::map<std::string, std::string>* metadata) {
  tensors->clear();
  metadata->clear();
  const size_t first = header_json.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || header_json[first] != '{') {
    throw std::runtime_error(path +
                             ": safetensors header is not a JSON object: not a .safetensors file?");
  }
  nlohmann::json header = nlohmann::json::parse(header_json, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) {
    throw std::runtime_error(
        path + ": safetensors header is not valid JSON: truncated or not a .safetensors file?");
  }
  if (!header.is_object()) {
    throw std::runtime_error(path + ": safetensors header is not a JSON object");
  }

  struct Range {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        throw std::runtime_error(path + ": __metadata__ must be an object of strings");
      }
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          throw std::runtime_error(path + ": __metadata__ key '" + key +
                                   "' is not a string (metadata must map strings to strings)");
        }
        (*metadata)[key] = value.get<std::string>();
      }
      continue;
    }
    if (name.empty()) throw std::runtime_error(path + ": tensor with an empty name in the header");
    if (!entry.is_object()) {
      throw std::runtime_error(where(path, name) + ": header entry is not an object");
    }
    SafetensorsTensorInfo info;
    // dtype
    const auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      throw std::runtime_error(where(path, name) + ": missing or non-string \"dtype\"");
    }
    const std::string dtype = dtype_it->get<std::string>();
    const auto known = std::find_if(std::begin(kDtypeNames), std::end(kDtypeNames),
                                    [&](const DtypeName& d) { return dtype == d.name; });
    if (known == std::end(kDtypeNames)) {
      throw std::runtime_error(where(path, name) + ": unknown or unsupported dtype '" + dtype +
                               "' (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8)");
    }
    info.dtype = known->dtype;
    // shape
    const auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) {
      throw std::runtime_error(where(path, name) + ": missing or non-array \"shape\"");
    }
    int64_t numel = 1;
    for (const auto& dim : *shape_it) {
      if (!dim.is_number_unsigned()) {
        throw std::runtime_error(where(path, name) + ": shape " + shape_it->dump() +
                                 " has an entry that is not a non-negative integer");
      }
      const uint64_t d = dim.get<uint64_t>();
      if (d > static_cast<uint64_t>(INT64_MAX) ||
          __builtin_mul_overflow(numel, static_cast<int64_t>(d), &numel)) {
        throw std::runtime_error(where(path, name) + ": shape " + shape_it->dump() + " overflows");
      }
      info.shape.push_back(static_cast<int64_t>(d));
    }
    // data_offsets
    const auto offsets_it = entry.find("data_offsets");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
      throw std::runtime_error(where(path, name) +
                               ": \"data_offsets\" must be [begin, end] of non-negative integers");
    }
    info.begin = (*offsets_it)[0].get<uint64_t>();
    info.end = (*offsets_it)[1].get<uint64_t>();
    if (info.begin > info.end) {
      throw std::runtime_error(where(path, name) + ": data_offsets " + offsets_it->dump() +
                               " has begin > end");
    }
    if (info.end > data_size) {
      throw std::runtime_error(where(path, name) + ": data_offsets " + offsets_it->dump() +
                               " end past the data section (" + std::to_string(data_size) +
                               " bytes): truncated file?");
    }
    int64_t bytes = 0;
    const bool overflow = __builtin_mul_overflow(numel, safetensors_dtype_size(info.dtype), &bytes);
    if (overflow || static_cast<uint64_t>(bytes) != info.end - info.begin) {
      throw std::runtime_error(where(path, name) + ": shape " + shape_it->dump() + " x " + dtype +
                               " needs " +
                               (overflow ? std::string("too many") : std::to_string(bytes)) +
                               " bytes but data_offsets span " +
                               std::to_string(info.end - info.begin) + " (size mismatch)");
    }
    if (info.end > info.begin) ranges.push_back({info.begin, info.end, name});
    (*tensors)[name] = std::move(info);
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      throw std::runtime_error(path + ": tensors '" + ranges[i - 1].name + "' and '" +
                               ranges[i].name + "' have overlapping data_offsets: corrupt header");
    }
  }
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string name = path.string();
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw std::runtime_error(name + ": cannot open safetensors file: " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(name + ": not a regular file");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < kLengthPrefixBytes) {
    ::close(fd);
    throw std::runtime_error(
        name + ": file is " + std::to_string(file_size) +
        " bytes, shorter than the 8-byte header length: truncated safetensors?");
  }
  auto mapping = std::make_shared<Mapping>();
  // Private + writable: tensors borrowed from the mapping may be modified in
  // place without faulting; changes are copy-on-write and never reach the file.
  // MAP_NORESERVE: no swap is reserved for pages that are never written.
  void* address =
      ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (address == MAP_FAILED) {
    throw std::runtime_error(name + ": cannot mmap safetensors file: " + std::strerror(map_errno));
  }
  mapping->address = address;
  mapping->length = file_size;

  const auto* bytes = static_cast<const unsigned char*>(address);
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes, sizeof(header_size));  // little-endian host
  if (header_size > kSafetensorsMaxHeaderBytes) {
    throw std::runtime_error(name + ": header length " + std::to_string(header_size) +
                             " exceeds the 100 MB limit: not a .safetensors file?");
  }
  if (header_size > file_size - kLengthPrefixBytes) {
    throw std::runtime_error(name + ": header length " + std::to_string(header_size) +
                             " runs past the end of the file (" + std::to_string(file_size) +
                             " bytes): truncated safetensors?");
  }
  SafetensorsFile file;
  file.path_ = path;
  file.data_ = bytes + kLengthPrefixBytes + header_size;
  file.data_size_ = file_size - kLengthPrefixBytes - header_size;
  const std::string header(reinterpret_cast<const char*>(bytes + kLengthPrefixBytes), header_size);
  parse_safetensors_header(header, file.data_size_, name, &file.tensors_, &file.metadata_);
  file.mapping_ = std::move(mapping);
  return file;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, info] : tensors_) out.push_back(name);
  return out;
}

const SafetensorsTensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    throw std::runtime_error(path_.string() + ": tensor '" + name +
                             "' not in file: wrong checkpoint or key name?");
  }
  return it->second;
}

void SafetensorsFile::release(const std::string& name) const {
  const SafetensorsTensorInfo& meta = info(name);
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(data_ + meta.begin);
  const auto end = reinterpret_cast<uintptr_t>(data_ + meta.end);
  // Whole pages inside the tensor only: its neighbours may share the edges.
  const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

at::Tensor SafetensorsFile::stored(const std::string& name) const {
  const SafetensorsTensorInfo& meta = info(name);
  const at::ScalarType stored = storage_scalar_type(meta.dtype);
  const unsigned char* src = data_ + meta.begin;
  const int64_t element = safetensors_dtype_size(meta.dtype);
  if (meta.numel() == 0) return at::detail::empty_cpu(meta.shape, stored);
  if (reinterpret_cast<uintptr_t>(src) % static_cast<uintptr_t>(element) == 0) {
    std::shared_ptr<Mapping> keep = mapping_;
    return at::from_blob(
        const_cast<unsigned char*>(src), meta.shape, [keep](void*) mutable { keep.reset(); },
        at::TensorOptions().dtype(stored).device(at::kCPU));
  }
  at::Tensor copy = at::detail::empty_cpu(meta.shape, stored);
  std::memcpy(copy.data_ptr(), src, meta.end - meta.begin);
  return copy;
}

at::Tensor SafetensorsFile::get(const std::string& name) const {
  at::Tensor raw = stored(name);
  const at::ScalarType wanted = is_floating(info(name).dtype) ? at::kFloat : at::kLong;
  return raw.scalar_type() == wanted ? raw : raw.to(wanted);
}

namespace {

// Flat indices of the non-finite values of a CPU tensor whose elements are
// `Bits` wide: NaN or Inf exactly when the exponent bits (`exponent`) are
// all ones. Reads the stored bits, so a bf16 or f16 weight is checked
// without a float32 copy.
template <typename Bits>
std::pair<size_t, size_t> count_non_finite(const at::Tensor& t, Bits exponent) {
  const auto* bits = static_cast<const Bits*>(t.data_ptr());
  const auto n = static_cast<size_t>(t.numel());
  size_t bad = 0, first = n;
  for (size_t i = 0; i < n; ++i) bad += (bits[i] & exponent) == exponent;
  for (size_t i = 0; bad != 0 && i < n && first == n; ++i) {
    if ((bits[i] & exponent) == exponent) first = i;
  }
  return {bad, first};
}

}  // namespace

void require_finite(const at::Tensor& tensor, const std::string& name,
                    const std::filesystem::path& file) {
  if (!at::isFloatingType(tensor.scalar_type()) || tensor.numel() == 0) return;
  std::pair<size_t, size_t> found;
  if (tensor.scalar_type() == at::kBFloat16 || tensor.scalar_type() == at::kHalf) {
    const at::Tensor t = tensor.to(at::kCPU).contiguous();
    found = count_non_finite<uint16_t>(
        t, tensor.scalar_type() == at::kBFloat16 ? uint16_t{0x7f80} : uint16_t{0x7c00});
  } else {
    const at::Tensor t = tensor.to(at::kCPU, at::kFloat).contiguous();
    found = count_non_finite<uint32_t>(t, 0x7f800000u);
  }
  const auto [bad, first] = found;
  if (bad == 0) return;
  throw std::runtime_error(fmt::format(
      "tensor '{}' in '{}' holds {} non-finite value(s) (NaN or Inf; the first at flat index {}): "
      "the file is damaged or comes from a diverged run",
      name, file.string(), bad, first));
}

void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata,
                      SafetensorsFloats floats) {
  const std::string file = path.string();
  std::vector<SaveEntry> entries;
  std::set<std::string> seen;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty() || name == "__metadata__") {
      throw std::invalid_argument(file + ": invalid tensor name '" + name + "'");
    }
    if (!seen.insert(name).second) {
      throw std::invalid_argument(file + ": tensor '" + name + "' given twice");
    }
    if (!tensor.defined()) {
      throw std::invalid_argument(file + ": tensor '" + name + "' is undefined");
    }
    const at::ScalarType type = tensor.scalar_type();
    at::Tensor out;
    const char* dtype = nullptr;
    if (type == at::kFloat || type == at::kDouble || type == at::kHalf || type == at::kBFloat16) {
      const bool keep = floats == SafetensorsFloats::kAsGiven;
      out = tensor.to(at::kCPU, keep ? type : at::kFloat).contiguous();
      dtype = keep ? float_dtype_name(type) : "F32";
    } else if (type == at::kLong) {
      out = tensor.to(at::kCPU).contiguous();
      dtype = "I64";
    } else {
      throw std::invalid_argument(file + ": tensor '" + name + "' has dtype " +
                                  std::string(c10::toString(type)) +
                                  "; only floating tensors (stored as F32) and int64 are written");
    }
    entries.push_back({name, std::move(out), dtype});
  }
  std::sort(entries.begin(), entries.end(),
            [](const SaveEntry& a, const SaveEntry& b) { return a.name < b.name; });

  std::string header;
  try {
    header = header_json(entries, metadata);
  } catch (const nlohmann::json::exception& e) {  // names and metadata must be valid UTF-8
    throw std::invalid_argument(file + ": tensor name or metadata is not valid UTF-8 (" + e.what() +
                                ")");
  }
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > kSafetensorsMaxHeaderBytes) {
    throw std::invalid_argument(file + ": safetensors header would exceed 100 MB");
  }

  AtomicFile out(path);
  const uint64_t header_size = header.size();
  char prefix[kLengthPrefixBytes];
  std::memcpy(prefix, &header_size, sizeof(prefix));  // little-endian host
  out.write(std::string_view(prefix, sizeof(prefix)));
  out.write(header);
  for (const SaveEntry& e : entries) {
    const size_t nbytes = static_cast<size_t>(e.data.numel()) * e.data.element_size();
    if (nbytes > 0)
      out.write(std::string_view(static_cast<const char*>(e.data.data_ptr()), nbytes));
  }
  out.commit();
}

}  // namespace vitrine::models
