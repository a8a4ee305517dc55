#include "protos/lenient_decode.h"

#include <fmt/format.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/unknown_field_set.h>

#include <map>
#include <vector>

#include "common/utf8.h"

namespace vitrine::rpc {

namespace pb = google::protobuf;

std::string invalid_utf8_field(const pb::Descriptor& type, std::string_view bytes) {
  // Parsed without a schema, so the bad bytes survive; the descriptor says
  // which length-delimited fields are strings and which are messages.
  pb::UnknownFieldSet fields;
  if (!fields.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return "";
  std::map<int, int> seen;  // field number -> occurrences so far (repeated fields)
  for (int i = 0; i < fields.field_count(); ++i) {
    const pb::UnknownField& f = fields.field(i);
    const int occurrence = seen[f.number()]++;
    const pb::FieldDescriptor* field = type.FindFieldByNumber(f.number());
    if (f.type() != pb::UnknownField::TYPE_LENGTH_DELIMITED || field == nullptr) continue;
    const std::string name =
        field->is_repeated() && !field->is_map()
            ? fmt::format("{}[{}]", field->name(), occurrence)
            : field->name();
    if (field->type() == pb::FieldDescriptor::TYPE_STRING &&
        !utf8::is_valid(f.length_delimited())) {
      return name;
    }
    if (field->type() == pb::FieldDescriptor::TYPE_MESSAGE) {
      const std::string inner = invalid_utf8_field(*field->message_type(), f.length_delimited());
      if (!inner.empty()) return name + "." + inner;
    }
  }
  return "";
}

grpc::Status decode(const grpc::ByteBuffer& bytes, pb::Message& message) {
  std::vector<grpc::Slice> slices;
  if (!bytes.Dump(&slices).ok()) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "the request could not be read"};
  }
  std::string flat;
  flat.reserve(bytes.Length());
  for (const grpc::Slice& s : slices) {
    flat.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  {
    // A client's bad bytes are its error, answered as such: not a line in
    // the server's log for every request.
    const pb::LogSilencer quiet;
    if (message.ParseFromString(flat)) return grpc::Status::OK;
  }
  const std::string field = invalid_utf8_field(*message.GetDescriptor(), flat);
  if (!field.empty()) {
    return {grpc::StatusCode::INVALID_ARGUMENT, fmt::format("{}: not valid UTF-8", field)};
  }
  return {grpc::StatusCode::INVALID_ARGUMENT,
          fmt::format("the request is not a valid {} message", message.GetTypeName())};
}

}  // namespace vitrine::rpc
