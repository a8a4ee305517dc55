// Exact length distribution in constant memory: counts per length, dense for
// the common range and sparse above it. Percentiles are exact (nearest rank),
// whatever the number of values. Not thread-safe; merge() per-thread copies.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

namespace vitrine::dataset {

class LengthHistogram {
 public:
  static constexpr uint32_t kDense = 8192;

  void add(uint64_t length) {
    if (length < kDense) {
      if (dense_.empty()) dense_.assign(kDense, 0);
      ++dense_[length];
    } else {
      ++sparse_[length];
    }
    ++count_;
    sum_ += length;
  }
  void merge(const LengthHistogram& other);

  uint64_t count() const { return count_; }
  double mean() const {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0;
  }
  // Smallest length L such that at least q of the values are <= L (q in [0, 1]).
  uint64_t percentile(double q) const;
  uint64_t min() const { return percentile(0.0); }
  uint64_t max() const;
  // {"count", "min", "p5", "p25", "p50", "p75", "p95", "p99", "max", "mean"}
  nlohmann::ordered_json summary() const;

 private:
  std::vector<uint64_t> dense_;
  std::map<uint64_t, uint64_t> sparse_;
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
};

}  // namespace vitrine::dataset
