// Requests decoded by the service rather than by gRPC, so that a request
// with invalid UTF-8 in a string field is refused as INVALID_ARGUMENT naming
// the field.
//
// gRPC decodes a request before any handler runs; protobuf refuses a proto3
// string that is not UTF-8, and the client then sees INTERNAL with empty
// details, counted nowhere. A method made lenient (lenient_unary,
// lenient_server_stream) is served as gRPC's "streamed" variant of the same
// RPC: the wire protocol is unchanged, but the handler reads the request as
// bytes and parses it here. A request that does not parse goes to `refuse`,
// which answers it (after the service's own admission and accounting) with
// the status decode() made.
#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/method_handler.h>
#include <grpcpp/support/sync_stream.h>

#include <functional>
#include <string>
#include <string_view>

namespace vitrine::rpc {

// The path ("text", "generation.name", "turns[2].text") of the first string
// field of a serialized `type` whose value is not valid UTF-8; "" when none.
std::string invalid_utf8_field(const google::protobuf::Descriptor& type, std::string_view bytes);

// Parses `bytes` into `message`: OK, or INVALID_ARGUMENT naming the field
// that is not UTF-8 (or saying the bytes are no such message).
grpc::Status decode(const grpc::ByteBuffer& bytes, google::protobuf::Message& message);

// Reads the call's one request message from `stream` and decodes it.
template <class Stream>
grpc::Status read_request(Stream& stream, google::protobuf::Message& request) {
  grpc::ByteBuffer bytes;
  if (!stream.Read(&bytes)) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "the call carried no request"};
  }
  return decode(bytes, request);
}

// Answers a request that could not be decoded with `status` (or another,
// say UNAUTHENTICATED, that the service finds first).
using Refuse = std::function<grpc::Status(grpc::ServerContext*, const grpc::Status&)>;

// A handler for a unary RPC served by `method`, decoding here.
template <class Request, class Response>
grpc::internal::MethodHandler* lenient_unary(
    std::function<grpc::Status(grpc::ServerContext*, const Request*, Response*)> method,
    Refuse refuse) {
  using Stream = grpc::ServerUnaryStreamer<grpc::ByteBuffer, Response>;
  return new grpc::internal::StreamedUnaryHandler<grpc::ByteBuffer, Response>(
      [method = std::move(method), refuse = std::move(refuse)](grpc::ServerContext* context,
                                                               Stream* stream) {
        Request request;
        grpc::Status status = read_request(*stream, request);
        if (!status.ok()) return refuse(context, status);
        Response response;
        status = method(context, &request, &response);
        if (status.ok()) stream->Write(response);
        return status;
      });
}

// A handler for a server-streaming RPC served by `method`, which writes
// its events with the function it is given, decoding here.
template <class Request, class Event>
grpc::internal::MethodHandler* lenient_server_stream(
    std::function<grpc::Status(grpc::ServerContext*, const Request*,
                               const std::function<bool(const Event&)>&)>
        method,
    Refuse refuse) {
  using Stream = grpc::ServerSplitStreamer<grpc::ByteBuffer, Event>;
  return new grpc::internal::SplitServerStreamingHandler<grpc::ByteBuffer, Event>(
      [method = std::move(method), refuse = std::move(refuse)](grpc::ServerContext* context,
                                                               Stream* stream) {
        Request request;
        const grpc::Status status = read_request(*stream, request);
        if (!status.ok()) return refuse(context, status);
        return method(context, &request, [stream](const Event& e) { return stream->Write(e); });
      });
}

}  // namespace vitrine::rpc
