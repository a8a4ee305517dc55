// The daemon's answers as OpenAI objects: chat.completion, the
// chat.completion.chunk events of a stream, model objects; each answer
// with the extra top-level "vitrine" object (route, sources and where their
// product was named, product_found and the closest titles when it is false,
// the conversation's turns used and dropped, response id, experiment arm,
// timings) that standard clients ignore.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "gateway/openai_request.h"
#include "vitrine/v1/chat.pb.h"

namespace vitrine::gateway {

// OpenAI's finish_reason for the daemon's ("length" stays; the rest is "stop").
std::string finish_reason_of(const std::string& daemon_reason);

nlohmann::json vitrine_of(const v1::AskResponse& r);
nlohmann::json usage_of(const v1::AskResponse& r);

// The whole answer; `stopped` when a stop sequence cut its text (already cut).
nlohmann::json completion_of(const ChatCall& call, const v1::AskResponse& r, bool stopped);

// GET /v1/models/{id}: the model object; GET /v1/models: the list.
nlohmann::json model_object(const std::string& id);
nlohmann::json model_list();

// The chunks of one streamed answer, all with the same id and time.
class ChunkWriter {
 public:
  explicit ChunkWriter(std::string model);

  // A chat.completion.chunk with one choice.
  nlohmann::json chunk(const nlohmann::json& delta, const nlohmann::json& finish_reason) const;
  // The usage chunk: no choices; `usage` may be null (unknown).
  nlohmann::json usage_chunk(const nlohmann::json& usage) const;

 private:
  std::string id_, model_;
  int64_t created_;
};

// One server-sent event carrying `j`.
std::string sse_event(const nlohmann::json& j);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace vitrine::gateway
