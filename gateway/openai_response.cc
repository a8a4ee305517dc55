// Daemon answers as OpenAI objects (see openai_response.h).
#include "gateway/openai_response.h"

#include <fmt/format.h>

#include <random>

#include "common/clock.h"
#include "gateway/openai_error.h"

namespace vitrine::gateway {

using Json = nlohmann::json;

std::string finish_reason_of(const std::string& daemon_reason) {
  return daemon_reason == "length" ? "length" : "stop";
}

Json vitrine_of(const v1::AskResponse& r) {
  Json sources = Json::array();
  for (const v1::Source& s : r.sources()) {
    Json source = {
        {"uid", s.uid()}, {"title", s.title()}, {"score", s.score()}, {"evidence", s.evidence()}};
    // The product was named in messages[history_index] (the daemon's
    // history index is the client's messages index).
    if (s.evidence() == "earlier turn") source["message_index"] = s.history_index();
    sources.push_back(std::move(source));
  }
  // Titles offered when no product matched (the answer is about none of them).
  Json closest = Json::array();
  for (const v1::Source& s : r.closest()) {
    closest.push_back({{"uid", s.uid()}, {"title", s.title()}, {"score", s.score()}});
  }
  return {{"response_id", r.response_id()},
          {"route",
           {{"agent", r.route().agent()},
            {"adapter", r.route().adapter()},
            {"adapter_version", r.route().adapter_version()},
            {"classifier_confidence", r.route().classifier_confidence()},
            {"evidence", r.route().evidence()}}},
          {"sources", sources},
          {"product_found", r.product_found()},
          {"closest", closest},
          {"history",
           {{"turns_used", r.history_turns_used()}, {"turns_dropped", r.history_turns_dropped()}}},
          {"experiment", r.experiment()},
          {"arm", r.arm()},
          {"finish_reason", r.finish_reason()},
          {"timings",
           {{"queue_ms", r.timings().queue_ms()},
            {"first_token_ms", r.timings().first_token_ms()},
            {"total_ms", r.timings().total_ms()},
            {"route_ms", r.timings().route_ms()}}}};
}

Json usage_of(const v1::AskResponse& r) {
  return {{"prompt_tokens", r.usage().prompt_tokens()},
          {"completion_tokens", r.usage().completion_tokens()},
          {"total_tokens", r.usage().prompt_tokens() + r.usage().completion_tokens()}};
}

Json completion_of(const ChatCall& call, const v1::AskResponse& r, bool stopped) {
  const std::string reason = stopped ? "stop" : finish_reason_of(r.finish_reason());
  return {{"id", "chatcmpl-" + r.response_id()},
          {"object", "chat.completion"},
          {"created", static_cast<int64_t>(unix_seconds())},
          {"model", call.model},
          {"choices", Json::array({{{"index", 0},
                                    {"message", {{"role", "assistant"}, {"content", r.text()}}},
                                    {"finish_reason", reason}}})},
          {"usage", usage_of(r)},
          {"vitrine", vitrine_of(r)}};
}

Json model_object(const std::string& id) {
  return {{"id", id}, {"object", "model"}, {"created", 0}, {"owned_by", "vitrine"}};
}

Json model_list() {
  Json data = Json::array();
  for (const auto& [name, _] : model_routes()) data.push_back(model_object(name));
  return {{"object", "list"}, {"data", data}};
}

ChunkWriter::ChunkWriter(std::string model)
    : id_(fmt::format("chatcmpl-{:08x}{:08x}", std::random_device{}(), std::random_device{}())),
      model_(std::move(model)),
      created_(static_cast<int64_t>(unix_seconds())) {}

Json ChunkWriter::chunk(const Json& delta, const Json& finish_reason) const {
  return {{"id", id_},
          {"object", "chat.completion.chunk"},
          {"created", created_},
          {"model", model_},
          {"choices",
           Json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish_reason}}})}};
}

Json ChunkWriter::usage_chunk(const Json& usage) const {
  return {{"id", id_},       {"object", "chat.completion.chunk"}, {"created", created_},
          {"model", model_}, {"choices", Json::array()},          {"usage", usage}};
}

std::string sse_event(const Json& j) {
  return "data: " + json_text(j) + "\n\n";
}

}  // namespace vitrine::gateway
