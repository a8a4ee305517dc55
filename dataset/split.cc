#include "dataset/split.h"

#include <fmt/format.h>

#include <stdexcept>

#include "common/stable_hash.h"

namespace vitrine::dataset {

void validate(const SplitOptions& options) {
  if (options.validation_ratio < 0 || options.test_ratio < 0 ||
      options.validation_ratio + options.test_ratio >= 1.0) {
    throw std::invalid_argument(fmt::format(
        "split ratios must be >= 0 and leave room for training: validation {} + test {} >= 1",
        options.validation_ratio, options.test_ratio));
  }
}

catalog::Split assign_split(std::string_view uid, const SplitOptions& options) {
  const double u = unit_interval(stable_hash64(uid, options.seed));
  if (u < options.test_ratio) return catalog::Split::kTest;
  if (u < options.test_ratio + options.validation_ratio) return catalog::Split::kValidation;
  return catalog::Split::kTrain;
}

}  // namespace vitrine::dataset
