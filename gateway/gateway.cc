// The gateway's routes and the daemon calls behind them (see gateway.h).
#include "gateway/gateway.h"

#include <fmt/format.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <set>
#include <stdexcept>

#include "common/text_file.h"
#include "gateway/chat_stream.h"
#include "gateway/openai_error.h"
#include "gateway/openai_request.h"
#include "gateway/openai_response.h"
#include "gateway/stop_sequences.h"
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
    ChatCall call = parse_chat_request(req.body);
    if (!call.stream) {
      grpc::ClientContext context;
      prepare(context);
      v1::AskResponse answer;
      const grpc::Status s = stub->Ask(&context, call.request, &answer);
      if (!s.ok()) throw error_of(s);
      const bool stopped = cut_at_stop(*answer.mutable_text(), call.stop);
      res.set_content(json_text(completion_of(call, answer, stopped)), "application/json");
      return;
    }
    stream_chat(req, res, std::move(call));
  }

  // Server-sent events. The daemon's first event is awaited before the
  // status line goes, so its refusal (or absence) is the HTTP status.
  void stream_chat(const httplib::Request& req, httplib::Response& res, ChatCall call) {
    const auto stream = std::make_shared<ChatStream>(
        *stub, std::move(call), [this](grpc::ClientContext& c) { prepare(c); });
    res.set_header("Cache-Control", "no-cache");
    auto provider = [stream](size_t, httplib::DataSink& sink) {
      std::string out;
      const bool more = stream->next(out);
      if (!out.empty() && !sink.write(out.data(), out.size())) {
        stream->cancel();  // the client went away
        return false;
      }
      if (!more) sink.done();
      return true;
    };
    if (req.version == "HTTP/1.0") {
      // No chunked encoding before HTTP/1.1: the stream ends with the connection.
      res.set_content_provider("text/event-stream", provider);
    } else {
      res.set_chunked_content_provider("text/event-stream", provider);
    }
  }

  void compare(const httplib::Request& req, httplib::Response& res) {
    const ChatCall call = parse_compare_request(req.body);
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
    const v1::FeedbackRequest request = parse_feedback_request(req.body);
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
    res.set_content(json_text(model_list()), "application/json");
  });
  http.Get(R"(/v1/models/[^/]*)", [](const httplib::Request& req, httplib::Response& res) {
    answer(res, [&] {
      const std::string id = req.path.substr(std::string_view("/v1/models/").size());
      for (const auto& [name, _] : model_routes()) {
        if (name == id) return res.set_content(json_text(model_object(id)), "application/json");
      }
      throw HttpError{404, fmt::format("the model {} does not exist", quote_value(Json(id))),
                      "invalid_request_error", "model_not_found", "model"};
    });
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
