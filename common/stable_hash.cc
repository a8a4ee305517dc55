#include "common/stable_hash.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>

namespace vitrine {

uint64_t stable_hash64(std::string_view bytes, uint64_t seed) {
  return XXH3_64bits_withSeed(bytes.data(), bytes.size(), seed);
}

Hash128 stable_hash128(std::string_view bytes, uint64_t seed) {
  const XXH128_hash_t h = XXH3_128bits_withSeed(bytes.data(), bytes.size(), seed);
  return Hash128{h.low64, h.high64};
}

StreamingHash128::StreamingHash128() : state_(XXH3_createState()) {
  XXH3_128bits_reset(static_cast<XXH3_state_t*>(state_));
}

StreamingHash128::~StreamingHash128() {
  XXH3_freeState(static_cast<XXH3_state_t*>(state_));
}

void StreamingHash128::update(std::string_view bytes) {
  XXH3_128bits_update(static_cast<XXH3_state_t*>(state_), bytes.data(), bytes.size());
}

Hash128 StreamingHash128::digest() const {
  const XXH128_hash_t h = XXH3_128bits_digest(static_cast<const XXH3_state_t*>(state_));
  return Hash128{h.low64, h.high64};
}

std::string StreamingHash128::hex() const {
  const Hash128 h = digest();
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high),
                static_cast<unsigned long long>(h.low));
  return buf;
}

std::string files_fingerprint(const std::vector<std::filesystem::path>& files) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_128bits_reset(state);
  std::vector<char> block(1 << 20);
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      XXH3_freeState(state);
      throw std::runtime_error(fmt::format("cannot read '{}' to fingerprint it", file.string()));
    }
    while (in) {
      in.read(block.data(), static_cast<std::streamsize>(block.size()));
      XXH3_128bits_update(state, block.data(), static_cast<size_t>(in.gcount()));
    }
  }
  const XXH128_hash_t h = XXH3_128bits_digest(state);
  XXH3_freeState(state);
  return fmt::format("{:016x}{:016x}", h.high64, h.low64);
}

}  // namespace vitrine
