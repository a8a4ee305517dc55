#include "protos/status.h"

#include <stdexcept>

#include "common/errors.h"

namespace vitrine::rpc {

grpc::Status status_of_current_exception() {
  try {
    throw;
  } catch (const NotFoundError& e) {
    return {grpc::StatusCode::NOT_FOUND, e.what()};
  } catch (const FailedPreconditionError& e) {
    return {grpc::StatusCode::FAILED_PRECONDITION, e.what()};
  } catch (const ResourceExhaustedError& e) {
    return {grpc::StatusCode::RESOURCE_EXHAUSTED, e.what()};
  } catch (const std::invalid_argument& e) {
    return {grpc::StatusCode::INVALID_ARGUMENT, e.what()};
  } catch (const std::exception& e) {
    return {grpc::StatusCode::INTERNAL, e.what()};
  } catch (...) {
    return {grpc::StatusCode::INTERNAL, "unknown error"};
  }
}

}  // namespace vitrine::rpc
