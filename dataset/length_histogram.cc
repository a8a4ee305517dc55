#include "dataset/length_histogram.h"

#include <cmath>

namespace vitrine::dataset {

void LengthHistogram::merge(const LengthHistogram& other) {
  if (!other.dense_.empty()) {
    if (dense_.empty()) dense_.assign(kDense, 0);
    for (uint32_t i = 0; i < kDense; ++i) dense_[i] += other.dense_[i];
  }
  for (const auto& [len, n] : other.sparse_) sparse_[len] += n;
  count_ += other.count_;
  sum_ += other.sum_;
}

uint64_t LengthHistogram::percentile(double q) const {
  if (count_ == 0) return 0;
  const auto rank =
      std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_))));
  uint64_t seen = 0;
  for (uint32_t i = 0; i < dense_.size(); ++i) {
    seen += dense_[i];
    if (seen >= rank) return i;
  }
  for (const auto& [len, n] : sparse_) {
    seen += n;
    if (seen >= rank) return len;
  }
  return max();
}

uint64_t LengthHistogram::max() const {
  if (!sparse_.empty()) return sparse_.rbegin()->first;
  for (size_t i = dense_.size(); i-- > 0;) {
    if (dense_[i] != 0) return i;
  }
  return 0;
}

nlohmann::ordered_json LengthHistogram::summary() const {
  nlohmann::ordered_json j;
  j["count"] = count_;
  j["min"] = min();
  j["p5"] = percentile(0.05);
  j["p25"] = percentile(0.25);
  j["p50"] = percentile(0.50);
  j["p75"] = percentile(0.75);
  j["p95"] = percentile(0.95);
  j["p99"] = percentile(0.99);
  j["max"] = max();
  j["mean"] = std::round(mean() * 10.0) / 10.0;
  return j;
}

}  // namespace vitrine::dataset
