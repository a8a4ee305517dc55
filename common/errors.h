// Errors whose kind matters to a caller across a service's edge. Libraries
// throw these, std::invalid_argument for bad input, and std::runtime_error
// for everything else; protos/status.h turns them into gRPC codes in one
// place, so the libraries stay free of gRPC.
#pragma once

#include <stdexcept>

namespace vitrine {

// What was asked for does not exist (a job id, an adapter version).
struct NotFoundError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The request is well formed but the state does not allow it now.
struct FailedPreconditionError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A bounded queue or pool is full; the caller may retry later.
struct ResourceExhaustedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace vitrine
