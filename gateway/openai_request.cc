// Request bodies -> daemon requests, every parameter checked by type and
// range (see openai_request.h).
#include "gateway/openai_request.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "gateway/openai_error.h"

namespace vitrine::gateway {

namespace {

using Json = nlohmann::json;

constexpr size_t kMaxStopSequences = 4;  // as OpenAI's API allows

Json parse_object(std::string_view body) {
  Json j;
  try {
    j = Json::parse(body);
  } catch (const Json::parse_error& e) {
    throw bad_request(fmt::format("the body is not valid JSON: {}", e.what()), "", "invalid_json");
  } catch (const Json::out_of_range& e) {  // a number past double's range, such as 1e400
    throw bad_request(fmt::format("the body holds a number out of range: {}", e.what()), "",
                      "invalid_json");
  }
  if (!j.is_object()) throw bad_request("the body must be a JSON object", "", "invalid_json");
  return j;
}

// The value of `key`; nullptr when absent or null ("not given").
const Json* given(const Json& j, const char* key) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::optional<bool> boolean(const Json* v, const std::string& param) {
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) {
    throw bad_request(fmt::format("'{}' must be true or false, not {}", param, quote_value(*v)),
                      param);
  }
  return v->get<bool>();
}

std::optional<double> number(const Json* v, const std::string& param, double lo, double hi) {
  if (v == nullptr) return std::nullopt;
  if (!v->is_number() || v->get<double>() < lo || v->get<double>() > hi) {
    throw bad_request(
        fmt::format("'{}' must be a number from {} to {}, not {}", param, lo, hi, quote_value(*v)),
        param);
  }
  return v->get<double>();
}

// An integral number (12, 12.0, 1e20), as a double: JSON does not say int.
std::optional<double> integral(const Json* v, const std::string& param, const char* expected) {
  if (v == nullptr) return std::nullopt;
  const bool ok = v->is_number_integer() || v->is_number_unsigned() ||
                  (v->is_number_float() && std::isfinite(v->get<double>()) &&
                   std::floor(v->get<double>()) == v->get<double>());
  if (!ok) {
    throw bad_request(fmt::format("'{}' must be {}, not {}", param, expected, quote_value(*v)),
                      param);
  }
  return v->get<double>();
}

std::optional<std::string> string(const Json* v, const std::string& param) {
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) {
    throw bad_request(fmt::format("'{}' must be a string, not {}", param, quote_value(*v)), param);
  }
  return v->get<std::string>();
}

v1::Route route_of(const Json& j, std::string& model) {
  const std::optional<std::string> name = string(given(j, "model"), "model");
  if (!name) {
    throw bad_request("'model' is required: one of vitrine, vitrine-describe, vitrine-qa, base",
                      "model");
  }
  model = *name;
  const auto& routes = model_routes();
  const auto route =
      std::find_if(routes.begin(), routes.end(), [&](const auto& m) { return m.first == model; });
  if (route == routes.end()) {
    throw HttpError{404,
                    fmt::format("the model {} does not exist: use vitrine, vitrine-describe, "
                                "vitrine-qa or base",
                                quote_value(Json(model))),
                    "invalid_request_error", "model_not_found", "model"};
  }
  return route->second;
}

// A message's text: a string, or the text parts of an array joined by lines.
std::string content_text(const Json* content, const std::string& param) {
  if (content == nullptr) return {};
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array()) {
    throw bad_request(fmt::format("'{}' must be a string or an array of content parts", param),
                      param);
  }
  std::string text;
  for (size_t i = 0; i < content->size(); ++i) {
    const Json& part = (*content)[i];
    const std::string at = fmt::format("{}[{}]", param, i);
    if (!part.is_object()) {
      throw bad_request(fmt::format("'{}' must be a content part object", at), at);
    }
    const std::optional<std::string> type = string(given(part, "type"), at + ".type");
    if (type != "text") {
      throw bad_request(fmt::format("'{}.type' must be \"text\": this server reads text only{}", at,
                                    type ? ", not " + quote_value(Json(*type)) : ""),
                        at + ".type");
    }
    const std::optional<std::string> piece = string(given(part, "text"), at + ".text");
    if (!piece) throw bad_request(fmt::format("'{}.text' is required", at), at + ".text");
    text += (text.empty() ? "" : "\n") + *piece;
  }
  return text;
}

// A message's role as the daemon's Turn has it. Tool results (and the
// older function results) are refused: tools are not supported.
v1::Turn::Role role_of(const Json& m, const std::string& at) {
  const std::optional<std::string> role = string(given(m, "role"), at + ".role");
  if (role == "system" || role == "developer") return v1::Turn::ROLE_SYSTEM;
  if (role == "user") return v1::Turn::ROLE_USER;
  if (role == "assistant") return v1::Turn::ROLE_ASSISTANT;
  if (role == "tool" || role == "function") {
    throw bad_request(fmt::format("'{}.role' = \"{}\": tool calls are not supported by this "
                                  "server, so there are no tool results to send",
                                  at, *role),
                      at + ".role", "unsupported_parameter");
  }
  throw bad_request(fmt::format("'{}.role' must be one of system, developer, user, assistant", at),
                    at + ".role");
}

// `messages` as the daemon's request: the last one (a user message with
// text) is the request's text, every earlier one a turn of its history at
// the same index, so the daemon's history[i] is the client's messages[i].
// System and developer messages are system turns, which the daemon joins.
void read_messages(const Json& j, v1::AskRequest& request) {
  const Json* messages = given(j, "messages");
  if (messages == nullptr || !messages->is_array() || messages->empty()) {
    throw bad_request("'messages' must be a non-empty array of messages", "messages");
  }
  const size_t last = messages->size() - 1;
  for (size_t i = 0; i <= last; ++i) {
    const Json& m = (*messages)[i];
    const std::string at = fmt::format("messages[{}]", i);
    if (!m.is_object()) throw bad_request(fmt::format("'{}' must be a message object", at), at);
    const v1::Turn::Role role = role_of(m, at);
    if (const Json* calls = given(m, "tool_calls"); calls != nullptr && !calls->empty()) {
      throw bad_request(
          fmt::format("'{}.tool_calls': tool calls are not supported by this server", at),
          at + ".tool_calls", "unsupported_parameter");
    }
    std::string content = content_text(given(m, "content"), at + ".content");
    if (i < last) {
      v1::Turn& turn = *request.add_history();
      turn.set_role(role);
      turn.set_text(std::move(content));
      continue;
    }
    if (role != v1::Turn::ROLE_USER) {
      throw bad_request(fmt::format("'{}' must be a user message: the last message is the one "
                                    "answered (a {} message is not)",
                                    at, m.at("role").get<std::string>()),
                        at);
    }
    if (content.empty()) {
      throw bad_request(fmt::format("'{}.content' has no text to answer", at), at + ".content");
    }
    request.set_text(std::move(content));
  }
}

// max_completion_tokens (or the older max_tokens): an integer >= 1; past
// what int32 holds, its largest value (the daemon clamps to its limit).
void read_max_tokens(const Json& j, v1::GenerationSettings& g) {
  for (const char* key : {"max_completion_tokens", "max_tokens"}) {
    const std::optional<double> v = integral(given(j, key), key, "an integer >= 1");
    if (!v) continue;
    if (*v < 1) {
      throw bad_request(
          fmt::format("'{}' must be an integer >= 1, not {}", key, quote_value(j[key])), key);
    }
    constexpr double kMax = std::numeric_limits<int32_t>::max();
    g.set_max_new_tokens(static_cast<int32_t>(std::min(*v, kMax)));
    return;  // max_completion_tokens wins when both are given
  }
}

void read_generation(const Json& j, v1::GenerationSettings& g) {
  read_max_tokens(j, g);
  if (const auto v = number(given(j, "temperature"), "temperature", 0, 2)) g.set_temperature(*v);
  if (const auto v = number(given(j, "top_p"), "top_p", 0, 1)) g.set_top_p(*v);
  if (const auto v = integral(given(j, "seed"), "seed", "an integer")) {
    if (*v < -9.2e18 || *v > 1.8e19) throw bad_request("'seed' is out of range", "seed");
    // Negative seeds keep their 64 bits, as int64 -> uint64.
    g.set_seed(*v < 0 ? static_cast<uint64_t>(static_cast<int64_t>(*v))
                      : static_cast<uint64_t>(*v));
  }
}

std::vector<std::string> read_stop(const Json& j) {
  const Json* v = given(j, "stop");
  if (v == nullptr) return {};
  const std::string kExpected = fmt::format(
      "'stop' must be a non-empty string or an array of at most {} of them", kMaxStopSequences);
  std::vector<std::string> stops;
  if (v->is_string()) {
    stops.push_back(v->get<std::string>());
  } else if (v->is_array() && v->size() <= kMaxStopSequences) {
    for (const Json& s : *v) {
      if (!s.is_string()) throw bad_request(kExpected, "stop");
      stops.push_back(s.get<std::string>());
    }
  } else {
    throw bad_request(kExpected, "stop");
  }
  if (std::any_of(stops.begin(), stops.end(), [](const std::string& s) { return s.empty(); })) {
    throw bad_request(kExpected, "stop");
  }
  return stops;
}

// Parameters this server does not implement: refused unless their value
// means what leaving them out means.
void refuse_unimplemented(const Json& j) {
  auto empty = [](const Json& v) { return (v.is_array() || v.is_object()) && v.empty(); };
  auto one_of = [](const Json& v, std::initializer_list<const char*> words) {
    return v.is_string() &&
           std::find(words.begin(), words.end(), v.get<std::string>()) != words.end();
  };
  auto zero = [](const Json& v) { return v.is_number() && v.get<double>() == 0; };
  struct Unimplemented {
    const char* key;
    std::function<bool(const Json&)> harmless;
    const char* why;
  };
  const Unimplemented kTable[] = {
      {"tools", empty, "tool calls are not supported"},
      {"tool_choice",
       [&](const Json& v) {
         return one_of(v, {"none", "auto"});
       },
       "tool calls are not supported"},
      {"functions", empty, "function calls are not supported"},
      {"function_call",
       [&](const Json& v) {
         return one_of(v, {"none", "auto"});
       },
       "function calls are not supported"},
      {"response_format",
       [](const Json& v) { return v.is_object() && v.value("type", Json()) == "text"; },
       "only {\"type\": \"text\"} is supported"},
      {"logprobs", [](const Json& v) { return v == false; }, "log probabilities are not supported"},
      {"top_logprobs", zero, "log probabilities are not supported"},
      {"n", [](const Json& v) { return v.is_number() && v.get<double>() == 1; },
       "only n = 1 is supported"},
      {"frequency_penalty", zero, "only 0 is supported"},
      {"presence_penalty", zero, "only 0 is supported"},
      {"logit_bias", empty, "logit bias is not supported"},
  };
  for (const Unimplemented& u : kTable) {
    const Json* v = given(j, u.key);
    if (v != nullptr && !u.harmless(*v)) {
      throw bad_request(fmt::format("'{}' = {}: {} by this server", u.key, quote_value(*v), u.why),
                        u.key, "unsupported_parameter");
    }
  }
}

ChatCall parse_chat_object(const Json& j) {
  ChatCall call;
  call.request.set_route(route_of(j, call.model));
  read_messages(j, call.request);
  read_generation(j, *call.request.mutable_generation());
  if (const auto user = string(given(j, "user"), "user")) call.request.set_user_id(*user);
  call.stream = boolean(given(j, "stream"), "stream").value_or(false);
  if (const Json* options = given(j, "stream_options")) {
    if (!options->is_object()) {
      throw bad_request("'stream_options' must be an object", "stream_options");
    }
    call.include_usage =
        boolean(given(*options, "include_usage"), "stream_options.include_usage").value_or(false);
  }
  call.stop = read_stop(j);
  refuse_unimplemented(j);
  return call;
}

}  // namespace

const std::vector<std::pair<std::string, v1::Route>>& model_routes() {
  static const std::vector<std::pair<std::string, v1::Route>> kModels = {
      {"vitrine", v1::ROUTE_AUTO},
      {"vitrine-describe", v1::ROUTE_DESCRIBE},
      {"vitrine-qa", v1::ROUTE_QA},
      {"base", v1::ROUTE_BASE}};
  return kModels;
}

ChatCall parse_chat_request(std::string_view body) {
  return parse_chat_object(parse_object(body));
}

ChatCall parse_compare_request(std::string_view body) {
  const Json j = parse_object(body);
  const std::optional<std::string> text = string(given(j, "text"), "text");
  if (!text || text->empty()) throw bad_request("'text' is required", "text");
  const Json* model = given(j, "model");
  Json chat = {{"model", model != nullptr ? *model : Json("vitrine")},
               {"messages", Json::array({{{"role", "user"}, {"content", *text}}})}};
  for (const char* key : {"max_tokens", "temperature", "seed"}) {
    if (j.contains(key)) chat[key] = j[key];
  }
  return parse_chat_object(chat);
}

v1::FeedbackRequest parse_feedback_request(std::string_view body) {
  const Json j = parse_object(body);
  v1::FeedbackRequest request;
  const std::optional<std::string> id = string(given(j, "response_id"), "response_id");
  if (!id || id->empty()) throw bad_request("'response_id' is required", "response_id");
  request.set_response_id(*id);
  const std::optional<double> rating = integral(given(j, "rating"), "rating", "1 or -1");
  if (!rating || (*rating != 1 && *rating != -1)) {
    throw bad_request("'rating' must be 1 or -1", "rating");
  }
  request.set_rating(static_cast<int32_t>(*rating));
  if (const auto comment = string(given(j, "comment"), "comment")) request.set_comment(*comment);
  return request;
}

}  // namespace vitrine::gateway
