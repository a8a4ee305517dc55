// OpenAI error objects, the daemon status mapping and safe JSON writing
// (see openai_error.h).
#include "gateway/openai_error.h"

#include "common/utf8.h"

namespace vitrine::gateway {

HttpError bad_request(std::string message, std::string param, std::string code) {
  return {400, std::move(message), "invalid_request_error", std::move(code), std::move(param)};
}

namespace {

// The daemon names a conversation's turns "history[i].text"; the gateway
// sends messages[i] as history[i] (openai_request.h), so the client reads
// its own names: "messages[i].content". "" when `m` names no turn.
std::string message_param(std::string& m) {
  if (m.rfind("history", 0) != 0) return "";
  m.replace(0, std::string_view("history").size(), "messages");
  const size_t colon = m.find(':');
  if (colon == std::string::npos) return "messages";
  std::string param = m.substr(0, colon);
  if (const size_t text = param.rfind(".text");
      text != std::string::npos && text + 5 == param.size()) {
    m.replace(text, 5, ".content");
    param.replace(text, 5, ".content");
  }
  return param;
}

}  // namespace

HttpError error_of(const grpc::Status& s) {
  std::string m = s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE: {
      std::string param = message_param(m);
      return {400, m, "invalid_request_error", "invalid_request", std::move(param)};
    }
    case grpc::StatusCode::UNAUTHENTICATED:
      return {502, "the gateway's token was refused by vitrined: " + m, "api_error",
              "upstream_unauthenticated"};
    case grpc::StatusCode::PERMISSION_DENIED:
      return {403, m, "permission_error", "permission_denied"};
    case grpc::StatusCode::NOT_FOUND:
      return {404, m, "invalid_request_error", "not_found"};
    case grpc::StatusCode::FAILED_PRECONDITION:
      return {409, m, "invalid_request_error", "failed_precondition"};
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return {429, m, "rate_limit_error", "overloaded"};
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return {504, m, "timeout_error", "timeout"};
    case grpc::StatusCode::UNAVAILABLE:
      return {503, "vitrined is unavailable: " + m, "api_error", "unavailable"};
    case grpc::StatusCode::CANCELLED:
      return {499, m, "api_error", "cancelled"};
    default:
      return {500, m, "api_error", "internal"};
  }
}

nlohmann::json error_json(const HttpError& e) {
  using Json = nlohmann::json;
  return Json{{"error",
               {{"message", e.message},
                {"type", e.type},
                {"param", e.param.empty() ? Json(nullptr) : Json(e.param)},
                {"code", e.code.empty() ? Json(nullptr) : Json(e.code)}}}};
}

std::string json_text(const nlohmann::json& j) {
  return j.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

std::string quote_value(const nlohmann::json& value, size_t max_chars) {
  std::string text = json_text(value);
  if (text.size() <= max_chars) return text;
  text.resize(utf8::prefix_bytes(text, max_chars));  // json_text's output is valid UTF-8
  return text + "...";
}

}  // namespace vitrine::gateway
