// The services every vitrine gRPC server offers beside its own, so that
// probes and generic clients work without the .proto files:
//
// * grpc.health.v1.Health: gRPC's built-in health service (the server sets
//   its status through grpc::Server::GetHealthCheckService()).
// * grpc.reflection.v1.ServerReflection, which grpcurl >= 1.8.8, grpcui and
//   Postman try first, and grpc.reflection.v1alpha.ServerReflection for
//   older clients. Both answer from this program's generated protobuf pool,
//   which also holds grpc/health/v1/health.proto, so a client that knows
//   only reflection can describe and call the health service too.
//
// Both reflection versions are served by the one implementation in
// server_services.cc rather than v1 here and v1alpha by gRPC's
// libgrpc++_reflection plugin: the two protocols are the same messages under
// two package names, so one implementation gives both the same answers, and
// the plugin's process-wide registration (and its own copy of the v1alpha
// descriptors, which would clash with ours) is not needed.
//
// Not goals: answering for descriptors outside the generated pool (a
// server built from dynamic descriptors), or remembering which files a
// stream already received (every answer carries all the files it needs).
#pragma once

#include <grpcpp/server_builder.h>

namespace vitrine::rpc {

// Turns on the health service and adds both reflection services to
// `builder`; call it before builder.BuildAndStart(). list_services then
// names every service the built server offers, these three included.
void add_health_and_reflection(grpc::ServerBuilder& builder);

}  // namespace vitrine::rpc
