// gRPC server reflection from the client's side, for the tests of every
// vitrine server (vitrined, `vitrine trainer serve`): ask over a
// grpc.reflection.v1 (or v1alpha) stream, build the answered files into a
// pool of their own, and call a method knowing only that pool, as grpcurl
// does.
#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/descriptor_database.h>
#include <google/protobuf/dynamic_message.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/support/generic_call.h"

namespace vitrine::testing {

namespace reflection = grpc::reflection::v1;

enum class ReflectionVersion { kV1, kV1alpha };

// Sends `requests` on one stream of the reflection service `version` and
// returns the answers in order (fewer when the stream fails). v1alpha is
// asked with the very bytes of the v1 messages and answered into v1
// messages: the two protocols are the same on the wire.
template <class Service, class Request, class Response>
std::vector<reflection::ServerReflectionResponse> reflect_with(
    const std::shared_ptr<grpc::Channel>& channel,
    const std::vector<reflection::ServerReflectionRequest>& requests) {
  auto stub = Service::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->ServerReflectionInfo(&context);
  std::vector<reflection::ServerReflectionResponse> answers;
  for (const reflection::ServerReflectionRequest& r : requests) {
    Request request;
    Response response;
    if (!request.ParseFromString(r.SerializeAsString()) || !stream->Write(request) ||
        !stream->Read(&response)) {
      break;
    }
    answers.emplace_back().ParseFromString(response.SerializeAsString());
  }
  stream->WritesDone();
  const grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  return answers;
}

inline std::vector<reflection::ServerReflectionResponse> reflect(
    const std::shared_ptr<grpc::Channel>& channel,
    const std::vector<reflection::ServerReflectionRequest>& requests,
    ReflectionVersion version = ReflectionVersion::kV1) {
  namespace alpha = grpc::reflection::v1alpha;
  return version == ReflectionVersion::kV1
             ? reflect_with<reflection::ServerReflection, reflection::ServerReflectionRequest,
                            reflection::ServerReflectionResponse>(channel, requests)
             : reflect_with<alpha::ServerReflection, alpha::ServerReflectionRequest,
                            alpha::ServerReflectionResponse>(channel, requests);
}

inline reflection::ServerReflectionRequest list_services() {
  reflection::ServerReflectionRequest r;
  r.set_list_services("*");
  return r;
}

inline reflection::ServerReflectionRequest file_containing_symbol(const std::string& symbol) {
  reflection::ServerReflectionRequest r;
  r.set_file_containing_symbol(symbol);
  return r;
}

inline reflection::ServerReflectionRequest file_by_filename(const std::string& name) {
  reflection::ServerReflectionRequest r;
  r.set_file_by_filename(name);
  return r;
}

inline std::vector<std::string> service_names(const reflection::ServerReflectionResponse& r) {
  std::vector<std::string> names;
  for (const auto& s : r.list_services_response().service()) names.push_back(s.name());
  return names;
}

inline std::vector<std::string> file_names(const reflection::ServerReflectionResponse& r) {
  std::vector<std::string> names;
  for (const std::string& bytes : r.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    names.push_back(file.ParseFromString(bytes) ? file.name() : "(unparsable)");
  }
  return names;
}

// The files of reflection answers, built on demand into their own pool
// (nothing from this program's generated pool), as a reflection client
// holds them.
class ReflectedPool {
 public:
  // Adds every file of `answer`; false when one does not parse.
  bool add(const reflection::ServerReflectionResponse& answer) {
    for (const std::string& bytes : answer.file_descriptor_response().file_descriptor_proto()) {
      google::protobuf::FileDescriptorProto file;
      if (!file.ParseFromString(bytes)) return false;
      database_.Add(file);  // false for a file added before: the same file
    }
    return true;
  }
  const google::protobuf::DescriptorPool& pool() const { return pool_; }

 private:
  google::protobuf::SimpleDescriptorDatabase database_;
  google::protobuf::DescriptorPool pool_{&database_};
};

// grpc.health.v1.Health/Check of `service`, made from `pool` alone: the
// request is a DynamicMessage of the reflected HealthCheckRequest and the
// answer is decoded the same way. The status's enum name, or why not.
inline std::string reflected_health_check(const std::shared_ptr<grpc::Channel>& channel,
                                          const google::protobuf::DescriptorPool& pool,
                                          const std::string& service) {
  namespace pb = google::protobuf;
  const pb::ServiceDescriptor* health = pool.FindServiceByName("grpc.health.v1.Health");
  const pb::MethodDescriptor* check = health ? health->FindMethodByName("Check") : nullptr;
  if (check == nullptr) return "no grpc.health.v1.Health.Check in the reflected files";
  pb::DynamicMessageFactory factory(&pool);
  std::unique_ptr<pb::Message> request(factory.GetPrototype(check->input_type())->New());
  const pb::FieldDescriptor* name = check->input_type()->FindFieldByName("service");
  if (name == nullptr) return "HealthCheckRequest has no field 'service'";
  request->GetReflection()->SetString(request.get(), name, service);
  std::string bytes;
  const std::string method = "/" + health->full_name() + "/" + check->name();
  const grpc::Status status = unary_call(channel, method, request->SerializeAsString(), bytes);
  if (!status.ok()) return "Check failed: " + status.error_message();
  std::unique_ptr<pb::Message> response(factory.GetPrototype(check->output_type())->New());
  const pb::FieldDescriptor* field = check->output_type()->FindFieldByName("status");
  if (!response->ParseFromString(bytes) || field == nullptr) return "unreadable answer";
  return response->GetReflection()->GetEnum(*response, field)->name();
}

inline bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

inline void expect_not_found(const reflection::ServerReflectionResponse& answer) {
  EXPECT_EQ(answer.error_response().error_code(), grpc::StatusCode::NOT_FOUND)
      << answer.ShortDebugString();
  EXPECT_FALSE(answer.error_response().error_message().empty());
}

// `answer` holds the file declaring `service`, which a pool built from the
// answer alone knows with every one of `methods`.
inline void expect_service_file(const reflection::ServerReflectionResponse& answer,
                                const std::string& service,
                                const std::vector<std::string>& methods) {
  SCOPED_TRACE(service);
  ASSERT_TRUE(answer.has_file_descriptor_response()) << answer.ShortDebugString();
  ReflectedPool files;
  ASSERT_TRUE(files.add(answer));
  const google::protobuf::ServiceDescriptor* found = files.pool().FindServiceByName(service);
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->method_count(), static_cast<int>(methods.size()));
  for (const std::string& m : methods) EXPECT_NE(found->FindMethodByName(m), nullptr) << m;
}

// What a server's reflection must answer on one stream: `services` (and
// health and both reflection services) listed; the files declaring
// `service` (with `methods`) and grpc.health.v1.Health; a file with all it
// imports; NOT_FOUND for unknown names. Returns the answers.
inline std::vector<reflection::ServerReflectionResponse> expect_reflection_answers(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
    const std::vector<std::string>& methods, ReflectionVersion version) {
  reflection::ServerReflectionRequest extension;
  extension.mutable_file_containing_extension()->set_containing_type("no.such.Message");
  extension.mutable_file_containing_extension()->set_extension_number(1000);
  reflection::ServerReflectionRequest numbers;
  numbers.set_all_extension_numbers_of_type("no.such.Message");
  const auto answers = reflect(
      channel,
      {list_services(), file_containing_symbol(service),
       file_containing_symbol("grpc.health.v1.Health"),
       file_by_filename("google/protobuf/api.proto"), file_containing_symbol("no.such.Service"),
       file_by_filename("no/such.proto"), extension, numbers},
      version);
  EXPECT_EQ(answers.size(), 8u);
  if (answers.size() != 8) return answers;
  const std::vector<std::string> listed = service_names(answers[0]);
  for (const char* name : {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                           "grpc.reflection.v1alpha.ServerReflection"}) {
    EXPECT_TRUE(contains(listed, name)) << name << " not listed";
  }
  EXPECT_TRUE(contains(listed, service)) << service << " not listed";
  EXPECT_EQ(answers[1].original_request().file_containing_symbol(), service);
  expect_service_file(answers[1], service, methods);
  expect_service_file(answers[2], "grpc.health.v1.Health", {"Check", "Watch"});
  const std::vector<std::string> api = file_names(answers[3]);
  // The file asked for, then its imports.
  EXPECT_EQ(api.empty() ? "" : api[0], "google/protobuf/api.proto")
      << answers[3].ShortDebugString();
  for (const char* import : {"google/protobuf/type.proto", "google/protobuf/source_context.proto",
                             "google/protobuf/any.proto"}) {
    EXPECT_EQ(std::count(api.begin(), api.end(), import), 1) << import;
  }
  for (size_t i = 4; i < answers.size(); ++i) expect_not_found(answers[i]);
  return answers;
}

// The reflection a vitrine server must offer, over v1 and v1alpha, and a
// call of grpc.health.v1.Health/Check made from the reflected files alone
// whose answer says SERVING for `health_service`.
inline void expect_reflection_serves(const std::shared_ptr<grpc::Channel>& channel,
                                     const std::string& service,
                                     const std::vector<std::string>& methods,
                                     const std::string& health_service) {
  for (const ReflectionVersion version : {ReflectionVersion::kV1, ReflectionVersion::kV1alpha}) {
    SCOPED_TRACE(version == ReflectionVersion::kV1 ? "v1" : "v1alpha");
    const auto answers = expect_reflection_answers(channel, service, methods, version);
    if (answers.size() < 3) continue;
    ReflectedPool files;
    ASSERT_TRUE(files.add(answers[2]));
    EXPECT_EQ(reflected_health_check(channel, files.pool(), health_service), "SERVING");
    EXPECT_EQ(reflected_health_check(channel, files.pool(), "no.such.Service"),
              "Check failed: service name unknown");
  }
}

}  // namespace vitrine::testing
