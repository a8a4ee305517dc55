// Train / validation / test assignment by a stable hash of the product id.
//
// A product lands in the same split on every run and every machine: the
// split depends only on its uid, the ratios and the seed, never on file order
// or thread count. Not a goal: exact split sizes (they are binomial around
// the ratios).
#pragma once

#include <cstdint>
#include <string_view>

#include "catalog/product.h"

namespace vitrine::dataset {

struct SplitOptions {
  double validation_ratio =
      0.05;                  // share of products held out for validation loss and early stopping
  double test_ratio = 0.05;  // share held out for the final evaluation (never trained on)
  uint64_t seed = 0;         // changes the assignment; 0 = the documented default split
};

// Throws std::invalid_argument when ratios are negative or sum to >= 1.
void validate(const SplitOptions& options);

// The split of the product with this uid.
catalog::Split assign_split(std::string_view uid, const SplitOptions& options);

}  // namespace vitrine::dataset
