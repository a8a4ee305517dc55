// The gateway's routes and the daemon calls behind them (see gateway.h).
#include "gateway/gateway.h"

#include <fmt/format.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>

#include "common/clock.h"
#include "common/text_file.h"
#include "common/utf8.h"
#include "gateway/openai_error.h"
#include "vitrine/v1/chat.grpc.pb.h"

namespace vitrine::gateway {

// The web page, built in from gateway/web/index.html (web_page.cc is generated).
extern const unsigned char kWebPage[];
extern const size_t kWebPageSize;

namespace {

using Json = nlohmann::json;

void send_error(httplib::Response& res, const HttpError& e) {
  res.status = e.status;
  res.set_content(json_text(error_json(e)), "application/json");
}

// Model names: the route each stands for.
const std::vector<std::pair<std::string, v1::Route>>& models() {
  static const std::vector<std::pair<std::string, v1::Route>> kModels = {
      {"vitrine", v1::ROUTE_AUTO},
      {"vitrine-describe", v1::ROUTE_DESCRIBE},
      {"vitrine-qa", v1::ROUTE_QA},
      {"base", v1::ROUTE_BASE}};
  return kModels;
}

std::string finish_reason(const std::string& engine_reason) {
  return engine_reason == "length" ? "length" : "stop";
}

Json vitrine_of(const v1::AskResponse& r) {
  Json sources = Json::array();
  for (const v1::Source& s : r.sources()) {
    sources.push_back({{"uid", s.uid()}, {"title", s.title()}, {"score", s.score()}});
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
          {"experiment", r.experiment()},
          {"arm", r.arm()},
          {"finish_reason", r.finish_reason()},
          {"timings",
           {{"queue_ms", r.timings().queue_ms()},
            {"first_token_ms", r.timings().first_token_ms()},
            {"total_ms", r.timings().total_ms()}}}};
}

Json usage_of(const v1::AskResponse& r) {
  return {{"prompt_tokens", r.usage().prompt_tokens()},
          {"completion_tokens", r.usage().completion_tokens()},
          {"total_tokens", r.usage().prompt_tokens() + r.usage().completion_tokens()}};
}

// The request a chat completion asks: its last user message, the route
// its model names, the generation settings it sets. Throws HttpError.
struct ChatCall {
  v1::AskRequest request;
  std::string model;
  bool stream = false;
  bool include_usage = false;
};

std::string message_text(const Json& content) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {  // [{"type": "text", "text": ...}, ...]
    std::string text;
    for (const Json& part : content) {
      if (part.is_object() && part.value("type", "") == "text" && part.contains("text") &&
          part["text"].is_string()) {
        text += (text.empty() ? "" : "\n") + part["text"].get<std::string>();
      }
    }
    return text;
  }
  return {};
}

ChatCall parse_chat(const std::string& body) {
  Json j;
  try {
    j = Json::parse(body);
  } catch (const Json::parse_error& e) {
    throw bad_request(fmt::format("the body is not valid JSON: {}", e.what()), "", "invalid_json");
  }
  if (!j.is_object()) throw bad_request("the body must be a JSON object", "", "invalid_json");
  ChatCall call;
  if (!j.contains("model") || !j["model"].is_string()) {
    throw bad_request("'model' is required: one of vitrine, vitrine-describe, vitrine-qa, base");
  }
  call.model = j["model"].get<std::string>();
  const auto route = std::find_if(models().begin(), models().end(),
                                  [&](const auto& m) { return m.first == call.model; });
  if (route == models().end()) {
    throw HttpError{404,
                    fmt::format("the model '{}' does not exist: use vitrine, vitrine-describe, "
                                "vitrine-qa or base",
                                call.model),
                    "invalid_request_error", "model_not_found"};
  }
  call.request.set_route(route->second);
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty()) {
    throw bad_request("'messages' must be a non-empty array");
  }
  std::string text;
  for (const Json& m : j["messages"]) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      throw bad_request("every message needs a 'role'");
    }
    if (m["role"] == "user" && m.contains("content")) text = message_text(m["content"]);
  }
  if (text.empty()) throw bad_request("no user message with text content");
  if (!utf8::is_valid(text)) throw bad_request("the user message is not valid UTF-8");
  call.request.set_text(text);
  v1::GenerationSettings& g = *call.request.mutable_generation();
  auto number = [&](const char* key) -> std::optional<double> {
    if (!j.contains(key) || j[key].is_null()) return std::nullopt;
    if (!j[key].is_number()) throw bad_request(fmt::format("'{}' must be a number", key));
    return j[key].get<double>();
  };
  if (const auto v = number("max_completion_tokens"))
    g.set_max_new_tokens(static_cast<int>(*v));
  else if (const auto v2 = number("max_tokens"))
    g.set_max_new_tokens(static_cast<int>(*v2));
  if (const auto v = number("temperature")) g.set_temperature(*v);
  if (const auto v = number("top_p")) g.set_top_p(*v);
  if (const auto v = number("seed")) g.set_seed(static_cast<uint64_t>(*v));
  if (const auto v = number("n"); v && *v != 1) throw bad_request("only n = 1 is supported");
  if (j.contains("user") && j["user"].is_string()) call.request.set_user_id(j["user"]);
  if (j.contains("stream") && !j["stream"].is_boolean() && !j["stream"].is_null()) {
    throw bad_request("'stream' must be true or false");
  }
  call.stream = j.value("stream", false);
  if (j.contains("stream_options") && j["stream_options"].is_object()) {
    call.include_usage = j["stream_options"].value("include_usage", false);
  }
  return call;
}

Json completion_of(const ChatCall& call, const v1::AskResponse& r) {
  return {{"id", "chatcmpl-" + r.response_id()},
          {"object", "chat.completion"},
          {"created", static_cast<int64_t>(unix_seconds())},
          {"model", call.model},
          {"choices", Json::array({{{"index", 0},
                                    {"message", {{"role", "assistant"}, {"content", r.text()}}},
                                    {"finish_reason", finish_reason(r.finish_reason())}}})},
          {"usage", usage_of(r)},
          {"vitrine", vitrine_of(r)}};
}

std::string sse(const Json& chunk) {
  return "data: " + json_text(chunk) + "\n\n";
}

}  // namespace

struct Gateway::State {
  GatewayConfig config;
  std::set<std::string> tokens;
  std::string daemon_token;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::ChatService::Stub> stub;
  httplib::Server server;

  void prepare(grpc::ClientContext& context) const {
    if (!daemon_token.empty()) context.AddMetadata("authorization", "Bearer " + daemon_token);
    context.set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::milliseconds(static_cast<int64_t>(config.timeout_seconds * 1000.0)));
  }

  // grpc.health.v1.Health/Check by hand: true when the daemon says SERVING.
  bool daemon_serving() const {
    grpc::GenericStub health(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc::Slice empty("");
    grpc::ByteBuffer in(&empty, 1), out;
    std::promise<grpc::Status> done;
    health.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &in, &out,
                     [&](grpc::Status s) { done.set_value(std::move(s)); });
    if (!done.get_future().get().ok()) return false;
    std::vector<grpc::Slice> slices;
    if (!out.Dump(&slices).ok()) return false;
    std::string bytes;
    for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    return bytes == std::string("\x08\x01", 2);  // status: SERVING
  }

  void chat(const httplib::Request& req, httplib::Response& res) {
    const ChatCall call = parse_chat(req.body);
    if (!call.stream) {
      grpc::ClientContext context;
      prepare(context);
      v1::AskResponse answer;
      const grpc::Status s = stub->Ask(&context, call.request, &answer);
      if (!s.ok()) throw error_of(s);
      res.set_content(json_text(completion_of(call, answer)), "application/json");
      return;
    }
    // Server-sent events, written as the daemon streams; a client that goes
    // away cancels the request at the daemon.
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [this, call](size_t,
                                                                       httplib::DataSink& sink) {
      grpc::ClientContext context;
      prepare(context);
      const std::string id = fmt::format("chatcmpl-{:x}", std::random_device{}());
      const int64_t created = static_cast<int64_t>(unix_seconds());
      auto chunk = [&](const Json& delta, const Json& finish) {
        return Json{{"id", id},
                    {"object", "chat.completion.chunk"},
                    {"created", created},
                    {"model", call.model},
                    {"choices",
                     Json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}})}};
      };
      bool open = true;
      auto send = [&](const std::string& text) {
        if (open && !sink.write(text.data(), text.size())) {
          open = false;
          context.TryCancel();  // the client went away
        }
      };
      auto reader = stub->AskStream(&context, call.request);
      send(sse(chunk({{"role", "assistant"}, {"content", ""}}, nullptr)));
      v1::AskStreamEvent event;
      v1::AskResponse answer;
      bool answered = false;
      while (reader->Read(&event)) {
        if (event.has_answer()) {
          answer = event.answer();
          answered = true;
        } else {
          send(sse(chunk({{"content", event.text()}}, nullptr)));
        }
      }
      const grpc::Status s = reader->Finish();
      if (!open) return false;
      if (!s.ok() || !answered) {
        const HttpError e =
            s.ok() ? HttpError{500, "the daemon ended without an answer", "api_error", "internal"}
                   : error_of(s);
        // Headers are gone: the error travels as an event, as OpenAI's servers do.
        send(sse(error_json(e)));
      } else {
        Json last = chunk(Json::object(), finish_reason(answer.finish_reason()));
        last["vitrine"] = vitrine_of(answer);
        if (call.include_usage) last["usage"] = nullptr;
        send(sse(last));
        if (call.include_usage) {
          Json usage = chunk(Json::object(), nullptr);
          usage["choices"] = Json::array();
          usage["usage"] = usage_of(answer);
          send(sse(usage));
        }
      }
      send("data: [DONE]\n\n");
      sink.done();
      return open;
    });
  }

  void compare(const httplib::Request& req, httplib::Response& res) {
    Json j;
    try {
      j = Json::parse(req.body);
    } catch (const Json::parse_error& e) {
      throw bad_request(fmt::format("the body is not valid JSON: {}", e.what()), "",
                        "invalid_json");
    }
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string()) {
      throw bad_request("'text' is required");
    }
    Json chat = {{"model", j.value("model", "vitrine")},
                 {"messages", Json::array({{{"role", "user"}, {"content", j["text"]}}})}};
    for (const char* key : {"max_tokens", "temperature", "seed"}) {
      if (j.contains(key)) chat[key] = j[key];
    }
    const ChatCall call = parse_chat(chat.dump());
    grpc::ClientContext context;
    prepare(context);
    v1::CompareResponse r;
    const grpc::Status s = stub->Compare(&context, call.request, &r);
    if (!s.ok()) throw error_of(s);
    res.set_content(
        json_text({{"base", {{"text", r.base().text()}, {"vitrine", vitrine_of(r.base())}}},
                   {"tuned", {{"text", r.tuned().text()}, {"vitrine", vitrine_of(r.tuned())}}}}),
        "application/json");
  }

  void feedback(const httplib::Request& req, httplib::Response& res) {
    Json j;
    try {
      j = Json::parse(req.body);
    } catch (const Json::parse_error& e) {
      throw bad_request(fmt::format("the body is not valid JSON: {}", e.what()), "",
                        "invalid_json");
    }
    if (!j.is_object() || !j.contains("response_id") || !j["response_id"].is_string() ||
        !j.contains("rating") || !j["rating"].is_number_integer()) {
      throw bad_request("'response_id' (string) and 'rating' (1 or -1) are required");
    }
    v1::FeedbackRequest request;
    request.set_response_id(j["response_id"]);
    request.set_rating(j["rating"].get<int>());
    if (j.contains("comment") && j["comment"].is_string()) request.set_comment(j["comment"]);
    grpc::ClientContext context;
    prepare(context);
    v1::FeedbackResponse nothing;
    const grpc::Status s = stub->Feedback(&context, request, &nothing);
    if (!s.ok()) throw error_of(s);
    res.set_content("{}", "application/json");
  }

  // CORS headers for an allowed Origin; false for a disallowed one.
  bool cors(const httplib::Request& req, httplib::Response& res) const {
    if (!req.has_header("Origin")) return true;
    const std::string origin = req.get_header_value("Origin");
    // The gateway's own page: browsers send Origin on same-origin POSTs too.
    const std::string host = req.get_header_value("Host");
    if (origin == "http://" + host || origin == "https://" + host) return true;
    const bool any = std::find(config.cors_origins.begin(), config.cors_origins.end(), "*") !=
                     config.cors_origins.end();
    if (!any && std::find(config.cors_origins.begin(), config.cors_origins.end(), origin) ==
                    config.cors_origins.end()) {
      return false;
    }
    res.set_header("Access-Control-Allow-Origin", any ? "*" : origin);
    res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
    res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    if (!any) res.set_header("Vary", "Origin");
    return true;
  }

  bool authorized(const httplib::Request& req) const {
    if (tokens.empty()) return true;
    const std::string value = req.get_header_value("Authorization");
    constexpr std::string_view kBearer = "Bearer ";
    return value.rfind(kBearer, 0) == 0 && tokens.count(value.substr(kBearer.size())) > 0;
  }
};

namespace {

// Runs a handler body, turning what it throws into an OpenAI error.
template <typename Body>
void answer(httplib::Response& res, Body&& body) {
  try {
    body();
  } catch (const HttpError& e) {
    send_error(res, e);
  } catch (const std::exception& e) {
    send_error(res, {500, e.what(), "api_error", "internal"});
  } catch (...) {
    send_error(res, {500, "internal error", "api_error", "internal"});
  }
}

}  // namespace

Gateway::Gateway(GatewayConfig config) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.config = std::move(config);
  if (!s.config.tokens_file.empty()) {
    const std::vector<std::string> listed =
        read_token_file(s.config.tokens_file, "gateway.tokens_file");
    s.tokens = std::set<std::string>(listed.begin(), listed.end());
  }
  if (!s.config.daemon_token_file.empty()) {  // its first token, as configs/gateway.yaml says
    s.daemon_token =
        read_token_file(s.config.daemon_token_file, "gateway.daemon_token_file").front();
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!s.config.daemon_tls_ca.empty()) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = read_whole_file(s.config.daemon_tls_ca, "gateway.daemon_tls_ca");
    credentials = grpc::SslCredentials(tls);
  }
  s.channel = grpc::CreateChannel(s.config.daemon, credentials);
  s.stub = v1::ChatService::NewStub(s.channel);

  httplib::Server& http = s.server;
  const int threads = s.config.threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http.set_payload_max_length(static_cast<size_t>(s.config.max_body_bytes));
  http.set_read_timeout(30);
  // Streamed answers are many small writes: without this, Nagle's algorithm
  // holds each back until the previous one is acknowledged.
  http.set_tcp_nodelay(true);
  http.set_write_timeout(static_cast<time_t>(s.config.timeout_seconds) + 5);
  // Authentication and CORS for the API; the page and the probes are public.
  http.set_pre_routing_handler([&s](const httplib::Request& req, httplib::Response& res) {
    if (req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    if (!s.cors(req, res)) {
      send_error(res, {403, "this origin may not call the API", "permission_error", "cors"});
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.method == "OPTIONS") {
      res.status = 204;
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!s.authorized(req)) {
      send_error(res, {401, "missing or unknown bearer token (Authorization: Bearer <token>)",
                       "invalid_request_error", "invalid_api_key"});
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // httplib's own refusals (unknown path, body over the limit) in OpenAI's
  // form; the path may hold any bytes, so its JSON replaces what is not UTF-8.
  http.set_error_handler([&s](const httplib::Request& req, httplib::Response& res) {
    try {
      if (!res.body.empty()) return;
      if (res.status == 413) {
        send_error(res, {413,
                         fmt::format("the request body is over the limit of {} bytes",
                                     s.config.max_body_bytes),
                         "invalid_request_error", "request_too_large"});
      } else if (res.status == 404) {
        send_error(res, {404,
                         fmt::format("no such endpoint: {} {}", req.method,
                                     quote_value(Json(req.path), 200)),
                         "invalid_request_error", "unknown_url"});
      }
    } catch (...) {  // never let the answer to an error fail
      res.body.clear();
    }
  });
  // What a handler lets escape (answer() catches what they throw) is a 500.
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        send_error(res, {500, "internal error", "api_error", "internal"});
      });
  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(reinterpret_cast<const char*>(kWebPage), kWebPageSize),
                    "text/html; charset=utf-8");
  });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  http.Get("/readyz", [&s](const httplib::Request&, httplib::Response& res) {
    const bool ready = s.daemon_serving();
    res.status = ready ? 200 : 503;
    res.set_content(ready ? "ready\n" : "vitrined is not serving\n", "text/plain");
  });
  http.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
    Json data = Json::array();
    for (const auto& [name, _] : models()) {
      data.push_back({{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "vitrine"}});
    }
    res.set_content(json_text({{"object", "list"}, {"data", data}}), "application/json");
  });
  http.Post("/v1/chat/completions", [&s](const httplib::Request& req, httplib::Response& res) {
    answer(res, [&] { s.chat(req, res); });
  });
  http.Post("/v1/compare", [&s](const httplib::Request& req, httplib::Response& res) {
    answer(res, [&] { s.compare(req, res); });
  });
  http.Post("/v1/feedback", [&s](const httplib::Request& req, httplib::Response& res) {
    answer(res, [&] { s.feedback(req, res); });
  });
  http.Options(R"(/v1/.*)",
               [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
}

Gateway::~Gateway() {
  stop();
}

void Gateway::run() {
  const std::string& listen = state_->config.listen;
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    throw std::invalid_argument(fmt::format("gateway.listen: '{}' is not host:port", listen));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) host = "0.0.0.0";
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (const std::exception&) {
    throw std::invalid_argument(fmt::format("gateway.listen: '{}' has no port", listen));
  }
  if (!state_->server.bind_to_port(host, port)) {
    throw std::runtime_error(fmt::format("cannot listen on '{}'", listen));
  }
  state_->server.listen_after_bind();
}

void Gateway::stop() {
  if (state_->server.is_running()) state_->server.stop();
}

}  // namespace vitrine::gateway
