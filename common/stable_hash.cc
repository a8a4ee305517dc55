#include "common/stable_hash.h"

#include <xxhash.h>

namespace vitrine {

uint64_t stable_hash64(std::string_view bytes, uint64_t seed) {
  return XXH3_64bits_withSeed(bytes.data(), bytes.size(), seed);
}

Hash128 stable_hash128(std::string_view bytes, uint64_t seed) {
  const XXH128_hash_t h = XXH3_128bits_withSeed(bytes.data(), bytes.size(), seed);
  return Hash128{h.low64, h.high64};
}

}  // namespace vitrine
