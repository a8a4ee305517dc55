// Errors as OpenAI's API writes them — {"error": {"message", "type",
// "param", "code"}} with the HTTP status of the case — and the one mapping
// of daemon (gRPC) statuses to them. Also the gateway's one way of writing
// JSON: with invalid UTF-8 replaced by U+FFFD, so a client's stray byte
// echoed in a message can never make the writing throw.
#pragma once

#include <grpcpp/support/status.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

namespace vitrine::gateway {

// An OpenAI error object and its HTTP status; thrown by request parsing and
// handlers, written by the handler wrapper.
struct HttpError {
  HttpError(int status_, std::string message_, std::string type_ = "api_error",
            std::string code_ = "", std::string param_ = "")
      : status(status_),
        message(std::move(message_)),
        type(std::move(type_)),
        code(std::move(code_)),
        param(std::move(param_)) {}

  int status;
  std::string message;
  std::string type;   // invalid_request_error, permission_error, api_error, ...
  std::string code;   // "" writes null
  std::string param;  // the request parameter at fault; "" writes null
};

// 400 invalid_request_error naming `param` (may be "").
HttpError bad_request(std::string message, std::string param = "",
                      std::string code = "invalid_request");

// The HTTP answer to a daemon status, as OpenAI servers answer alike cases.
// A 400 for a conversation's turn names it as the client does: the daemon's
// "history[3].text: ..." is "messages[3].content: ...", param messages[3].content.
HttpError error_of(const grpc::Status& status);

// {"error": {...}} for `e`.
nlohmann::json error_json(const HttpError& e);

// JSON text of `j`; invalid UTF-8 in strings becomes U+FFFD instead of
// throwing nlohmann's type_error.316.
std::string json_text(const nlohmann::json& j);

// A client-supplied value for an error message: its JSON text, at most
// `max_chars` code points of it (then "...").
std::string quote_value(const nlohmann::json& value, size_t max_chars = 40);

}  // namespace vitrine::gateway
