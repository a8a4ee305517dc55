#include "protos/server_services.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/impl/server_builder_plugin.h>
#include <grpcpp/impl/server_initializer.h>

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "grpc/health/v1/health.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace vitrine::rpc {
namespace {

namespace pb = google::protobuf;

// The names of the services a server offers. Known only once the server
// has started: gRPC registers its health service then.
class ServiceNames {
 public:
  void set(std::vector<std::string> names) {
    std::lock_guard lock(mutex_);
    names_ = std::move(names);
  }
  std::vector<std::string> get() const {
    std::lock_guard lock(mutex_);
    return names_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> names_;
};

// Appends `file` and then, depth first, every file it imports, each once:
// a client can build no file without the files it imports.
void add_file(const pb::FileDescriptor& file, std::set<std::string>& added,
              pb::RepeatedPtrField<std::string>& out) {
  if (!added.insert(file.name()).second) return;
  pb::FileDescriptorProto proto;
  file.CopyTo(&proto);
  proto.SerializeToString(out.Add());
  for (int i = 0; i < file.dependency_count(); ++i) add_file(*file.dependency(i), added, out);
}

// The error_response: the stream goes on, only this request failed.
template <class Response>
void set_error(Response& response, grpc::StatusCode code, const std::string& message) {
  response.mutable_error_response()->set_error_code(code);
  response.mutable_error_response()->set_error_message(message);
}

// `file` with its imports, or NOT_FOUND naming `what` when there is none.
template <class Response>
void send_file(const pb::FileDescriptor* file, const std::string& what, Response& response) {
  if (file == nullptr) {
    return set_error(response, grpc::StatusCode::NOT_FOUND, what + " not found");
  }
  std::set<std::string> added;
  add_file(*file, added,
           *response.mutable_file_descriptor_response()->mutable_file_descriptor_proto());
}

template <class ExtensionRequest, class Response>
void send_extension_file(const pb::DescriptorPool& pool, const ExtensionRequest& extension,
                         Response& response) {
  const pb::Descriptor* type = pool.FindMessageTypeByName(extension.containing_type());
  const pb::FieldDescriptor* field =
      type == nullptr ? nullptr : pool.FindExtensionByNumber(type, extension.extension_number());
  send_file(field == nullptr ? nullptr : field->file(),
            "extension " + std::to_string(extension.extension_number()) + " of '" +
                extension.containing_type() + "'",
            response);
}

template <class Response>
void send_extension_numbers(const pb::DescriptorPool& pool, const std::string& type_name,
                            Response& response) {
  const pb::Descriptor* type = pool.FindMessageTypeByName(type_name);
  if (type == nullptr) {
    return set_error(response, grpc::StatusCode::NOT_FOUND,
                     "message type '" + type_name + "' not found");
  }
  std::vector<const pb::FieldDescriptor*> extensions;
  pool.FindAllExtensions(type, &extensions);
  auto& numbers = *response.mutable_all_extension_numbers_response();
  numbers.set_base_type_name(type->full_name());
  for (const pb::FieldDescriptor* e : extensions) numbers.add_extension_number(e->number());
}

// One answer, for v1 and v1alpha alike (their generated classes have the
// same members).
template <class Request, class Response>
void answer(const Request& request, const ServiceNames& services, Response& response) {
  const pb::DescriptorPool& pool = *pb::DescriptorPool::generated_pool();
  response.set_valid_host(request.host());
  *response.mutable_original_request() = request;
  switch (request.message_request_case()) {
    case Request::kFileByFilename:
      return send_file(pool.FindFileByName(request.file_by_filename()),
                       "file '" + request.file_by_filename() + "'", response);
    case Request::kFileContainingSymbol:
      return send_file(pool.FindFileContainingSymbol(request.file_containing_symbol()),
                       "symbol '" + request.file_containing_symbol() + "'", response);
    case Request::kFileContainingExtension:
      return send_extension_file(pool, request.file_containing_extension(), response);
    case Request::kAllExtensionNumbersOfType:
      return send_extension_numbers(pool, request.all_extension_numbers_of_type(), response);
    case Request::kListServices: {
      auto& list = *response.mutable_list_services_response();
      for (const std::string& name : services.get()) list.add_service()->set_name(name);
      return;
    }
    default:  // nothing asked, or a kind of request newer than this server
      return set_error(response, grpc::StatusCode::UNIMPLEMENTED,
                       "the request asks for nothing this server knows");
  }
}

template <class Service, class Request, class Response>
class Reflection final : public Service {
 public:
  explicit Reflection(std::shared_ptr<const ServiceNames> services)
      : services_(std::move(services)) {}

  grpc::Status ServerReflectionInfo(grpc::ServerContext*,
                                    grpc::ServerReaderWriter<Response, Request>* stream) override {
    Request request;
    while (stream->Read(&request)) {
      Response response;
      answer(request, *services_, response);
      if (!stream->Write(response)) break;
    }
    return grpc::Status::OK;
  }

 private:
  std::shared_ptr<const ServiceNames> services_;
};

namespace v1 = grpc::reflection::v1;
namespace v1alpha = grpc::reflection::v1alpha;
using ReflectionV1 = Reflection<v1::ServerReflection::Service, v1::ServerReflectionRequest,
                                v1::ServerReflectionResponse>;
using ReflectionV1alpha =
    Reflection<v1alpha::ServerReflection::Service, v1alpha::ServerReflectionRequest,
               v1alpha::ServerReflectionResponse>;

// Registers both reflection services on the server being built, then
// gives them the server's list of services once it is complete. A plugin
// is gRPC's one way to see that list.
class ReflectionPlugin final : public grpc::ServerBuilderPlugin {
 public:
  std::string name() override { return "vitrine_reflection"; }
  void InitServer(grpc::ServerInitializer* si) override {
    si->RegisterService(std::make_shared<ReflectionV1>(services_));
    si->RegisterService(std::make_shared<ReflectionV1alpha>(services_));
  }
  // Called after the server started, so the health service is listed.
  void Finish(grpc::ServerInitializer* si) override { services_->set(*si->GetServiceList()); }
  void ChangeArguments(const std::string&, void*) override {}
  // Both services are synchronous: the server needs its sync threads for
  // them even when it has no other synchronous service.
  bool has_sync_methods() const override { return true; }

 private:
  std::shared_ptr<ServiceNames> services_ = std::make_shared<ServiceNames>();
};

// Installs the plugin on one builder (gRPC's InternalAddPluginFactory
// would install it on every builder of the process).
class ReflectionOption final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->push_back(std::make_unique<ReflectionPlugin>());
  }
};

}  // namespace

void add_health_and_reflection(grpc::ServerBuilder& builder) {
  // Nothing else names health.proto's code, and the linker leaves an
  // unnamed object of a static library out: then its descriptor would not
  // be in the generated pool, and reflection could not describe Health.
  grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::EnableDefaultHealthCheckService(true);
  builder.SetOption(std::make_unique<ReflectionOption>());
}

}  // namespace vitrine::rpc
