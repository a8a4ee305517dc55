// A unary gRPC call with serialized messages, through grpc::GenericStub:
// how a client that has no generated code for a service calls it.
#pragma once

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <future>
#include <string>
#include <vector>

namespace vitrine::testing {

// Calls `method` ("/package.Service/Method") with the serialized `request`;
// on success `response` holds the serialized answer.
inline grpc::Status unary_call(const std::shared_ptr<grpc::Channel>& channel,
                               const std::string& method, const std::string& request,
                               std::string& response,
                               std::chrono::seconds limit = std::chrono::seconds(2)) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + limit);
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1), out;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &in, &out,
                 [&](grpc::Status s) { done.set_value(s); });
  const grpc::Status status = done.get_future().get();
  std::vector<grpc::Slice> slices;
  if (status.ok()) out.Dump(&slices);
  response.clear();
  for (const auto& s : slices) response.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return status;
}

}  // namespace vitrine::testing
