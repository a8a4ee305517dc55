// Stable hashes for splitting and de-duplication.
//
// Built on XXH3 (xxHash 0.8), whose output is fixed across versions and
// platforms: a uid hashes to the same split on every machine, every run.
// Not a goal: cryptographic strength.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine {

struct Hash128 {
  uint64_t low = 0;
  uint64_t high = 0;
  bool operator==(const Hash128&) const = default;
};

// 64-bit XXH3 of `bytes` with `seed`.
uint64_t stable_hash64(std::string_view bytes, uint64_t seed = 0);

// 128-bit XXH3 of `bytes`: collisions between distinct inputs are negligible
// (~1e-26 for 1e6 items), so equal hashes stand for equal keys.
Hash128 stable_hash128(std::string_view bytes, uint64_t seed = 0);

// XXH3-128 of the contents of the files, in order, streamed in blocks, as
// 32 hex digits: the fingerprint of a model or dataset that a trained
// adapter records. Throws std::runtime_error naming a file it cannot read.
std::string files_fingerprint(const std::vector<std::filesystem::path>& files);

// Maps a 64-bit hash to [0, 1) using its top 53 bits.
inline double unit_interval(uint64_t hash) {
  return static_cast<double>(hash >> 11) * (1.0 / 9007199254740992.0);
}

// Incremental 128-bit XXH3 over a stream (equal to stable_hash128 of the
// concatenation with seed 0): the input fingerprint recorded in datasets.
class StreamingHash128 {
 public:
  StreamingHash128();
  ~StreamingHash128();
  StreamingHash128(const StreamingHash128&) = delete;
  StreamingHash128& operator=(const StreamingHash128&) = delete;
  void update(std::string_view bytes);
  Hash128 digest() const;
  // 32 lowercase hex digits, high half first.
  std::string hex() const;

 private:
  void* state_;
};

struct Hash128Hasher {
  size_t operator()(const Hash128& h) const {
    return static_cast<size_t>(h.low ^ (h.high * 0x9E3779B97F4A7C15ULL));
  }
};

}  // namespace vitrine
