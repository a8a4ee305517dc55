// Open-addressing hash map from 128-bit hashes to a small value, for the
// de-duplication of ~1.4 million records in ~40 MB (an unordered_set of the
// same keys takes ~3x more). Key (0, 0) is reserved and remapped.
// Not thread-safe; not a general container (no erase, no iteration order).
#pragma once

#include <cstdint>
#include <vector>

#include "common/stable_hash.h"

namespace vitrine::dataset {

template <typename Value>
class Hash128Map {
 public:
  // Returns the value slot for `key` and whether it was just inserted
  // (value-initialised) rather than found.
  std::pair<Value*, bool> insert(Hash128 key) {
    if (key.low == 0 && key.high == 0) key.low = 1;
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    const size_t mask = slots_.size() - 1;
    for (size_t i = static_cast<size_t>(key.low) & mask;; i = (i + 1) & mask) {
      Slot& slot = slots_[i];
      if (slot.key.low == 0 && slot.key.high == 0) {
        slot.key = key;
        ++size_;
        return {&slot.value, true};
      }
      if (slot.key == key) return {&slot.value, false};
    }
  }
  size_t size() const { return size_; }
  size_t memory_bytes() const { return slots_.size() * sizeof(Slot); }

 private:
  struct Slot {
    Hash128 key;
    Value value{};
  };
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 1024 : old.size() * 2, Slot{});
    size_ = 0;
    for (const Slot& s : old) {
      if (s.key.low != 0 || s.key.high != 0) *insert(s.key).first = s.value;
    }
  }
  std::vector<Slot> slots_;
  size_t size_ = 0;
};

}  // namespace vitrine::dataset
