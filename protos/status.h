// The one mapping from library exceptions to grpc::Status, used by every
// service handler: libraries throw (common/errors.h), handlers return
// status_of_current_exception() from their catch block, or wrap their body
// in guarded().
#pragma once

#include <grpcpp/support/status.h>

#include <utility>

namespace vitrine::rpc {

// Inside a catch block: NotFoundError -> NOT_FOUND, FailedPreconditionError
// -> FAILED_PRECONDITION, ResourceExhaustedError -> RESOURCE_EXHAUSTED,
// std::invalid_argument -> INVALID_ARGUMENT, anything else -> INTERNAL;
// the message is the exception's.
grpc::Status status_of_current_exception();

// Runs body (returning void or grpc::Status) and maps what it throws.
template <typename Body>
grpc::Status guarded(Body&& body) {
  try {
    if constexpr (std::is_void_v<decltype(body())>) {
      std::forward<Body>(body)();
      return grpc::Status::OK;
    } else {
      return std::forward<Body>(body)();
    }
  } catch (...) {
    return status_of_current_exception();
  }
}

}  // namespace vitrine::rpc
