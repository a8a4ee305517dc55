// The gateway's routes and the daemon calls behind them (see gateway.h):
// each handler reads its body within the limit, parses it
// (openai_request.h), calls the daemon and writes OpenAI objects
// (openai_response.h); whatever it throws becomes an OpenAI error.
#include "gateway/gateway.h"

#include <fmt/format.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <future>
#include <set>
#include <stdexcept>

#include "common/metrics.h"
#include "common/net.h"
#include "common/strings.h"
#include "common/text_file.h"
#include "gateway/access_policy.h"
#include "gateway/chat_stream.h"
#include "gateway/http_front.h"
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
using httplib::Request;
using httplib::Response;
using HandlerResponse = httplib::Server::HandlerResponse;

void send_error(Response& res, const HttpError& e) {
  res.status = e.status;
  res.set_content(json_text(error_json(e)), "application/json");
}

// Runs a handler body, turning whatever it throws into an OpenAI error.
template <typename Body>
void answer(Response& res, Body&& body) {
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

HttpError too_large(int64_t limit) {
  return {413, fmt::format("the request body is over the limit of {} bytes", limit),
          "invalid_request_error", "request_too_large"};
}

// The body, through httplib's reader (chunked or not), at most `limit`
// bytes: 413 past it, 408 when it came too slowly, 400 when unreadable.
std::string read_body(const httplib::ContentReader& reader, int64_t limit) {
  std::string body;
  bool over = false;
  const bool ok = reader([&](const char* data, size_t n) {
    if (body.size() + n > static_cast<size_t>(limit)) {
      over = true;
      return false;
    }
    body.append(data, n);
    return true;
  });
  if (over) throw too_large(limit);
  if (!ok && HttpFront::body_timed_out()) {
    throw HttpError{408, "the request body did not arrive in time", "invalid_request_error",
                    "request_timeout"};
  }
  if (!ok) throw bad_request("the request body could not be read", "", "invalid_body");
  return body;
}

// Framing a handler should never see: compressed bodies (their size is
// unknown until inflated), unknown or doubled framing, a body over the limit.
std::optional<HttpError> framing_refusal(const Request& req, int64_t max_body_bytes) {
  const std::string encoding = req.get_header_value("Content-Encoding");
  if (!encoding.empty() && !ascii_iequals(encoding, "identity")) {
    return HttpError{415, "compressed request bodies are not accepted (Content-Encoding)",
                     "invalid_request_error", "unsupported_media_type"};
  }
  const bool has_length = req.has_header("Content-Length");
  if (req.has_header("Transfer-Encoding")) {
    if (!ascii_iequals(req.get_header_value("Transfer-Encoding"), "chunked") || has_length) {
      return bad_request("only 'Transfer-Encoding: chunked', without Content-Length, is accepted",
                         "", "invalid_framing");
    }
  }
  if (!has_length) return std::nullopt;
  const std::string length = req.get_header_value("Content-Length");
  if (length.empty() || length.size() > 18 ||
      length.find_first_not_of("0123456789") != std::string::npos) {
    return bad_request("Content-Length must be a number", "", "invalid_framing");
  }
  if (std::stoll(length) > max_body_bytes) return too_large(max_body_bytes);
  return std::nullopt;
}

// Probes and scrapes name the pod's address: any Host, no token.
bool is_probe(const Request& req) {
  return req.path == "/healthz" || req.path == "/readyz" || req.path == "/metrics";
}

// The path as a metrics label: one of the served routes or "other", so
// that a client's made-up paths cannot add series without bound.
std::string path_label(const std::string& path) {
  static const std::set<std::string, std::less<>> kRoutes = {
      "/",          "/healthz",    "/readyz",    "/metrics", "/v1/models", "/v1/chat/completions",
      "/v1/compare", "/v1/feedback"};
  if (kRoutes.contains(path)) return path;
  if (path.starts_with("/v1/models/")) return "/v1/models/{id}";
  return "other";
}

// When the request on this worker thread reached routing.
thread_local std::chrono::steady_clock::time_point t_started;

// The gateway's Prometheus series, served on GET /metrics.
struct GatewayMetrics {
  explicit GatewayMetrics(const HttpFront& front)
      : requests(registry.counter("vitrine_gateway_requests_total",
                                  "HTTP requests answered, by path and status",
                                  {"path", "status"})),
        seconds(registry.histogram("vitrine_gateway_request_seconds",
                                   "Time from a request's head to the end of its answer "
                                   "(a stream's last event)",
                                   {0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
                                   {"path"})) {
    add_process_metrics(registry);
    registry.gauge_callback("vitrine_gateway_open_connections", "Client connections open",
                            [&front] { return front.stats().open_connections; });
    registry.gauge_callback("vitrine_gateway_evicted_connections",
                            "Connections closed at max_connections to make room, since start",
                            [&front] { return static_cast<double>(front.stats().evicted); });
    registry.gauge_callback("vitrine_gateway_timed_out_requests",
                            "Requests whose head or body came too slowly (408), since start",
                            [&front] { return static_cast<double>(front.stats().timed_out); });
    registry.gauge_callback("vitrine_gateway_probes", "GET /healthz answered by the connection loop, since start",
                            [&front] { return static_cast<double>(front.stats().probes); });
  }

  void observe(const Request& req, const Response& res) {
    const std::string path = path_label(req.path);
    requests.labels({path, std::to_string(res.status)}).inc();
    seconds.labels({path}).observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_started).count());
  }

  MetricsRegistry registry;
  Counter& requests;
  Histogram& seconds;
};

}  // namespace

struct Gateway::State {
  GatewayConfig config;
  std::unique_ptr<AccessPolicy> access;
  std::string daemon_token;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::ChatService::Stub> stub;
  std::unique_ptr<HttpFront> server;
  std::unique_ptr<GatewayMetrics> metrics;

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

  void chat(const Request& req, Response& res, const httplib::ContentReader& reader) {
    ChatCall call = parse_chat_request(read_body(reader, config.max_body_bytes));
    if (call.stream) {
      stream_chat(req, res, std::move(call));
      return;
    }
    grpc::ClientContext context;
    prepare(context);
    v1::AskResponse answer;
    const grpc::Status s = stub->Ask(&context, call.request, &answer);
    if (!s.ok()) throw error_of(s);
    const bool stopped = cut_at_stop(*answer.mutable_text(), call.stop);
    res.set_content(json_text(completion_of(call, answer, stopped)), "application/json");
  }

  // Server-sent events. The daemon's first event is awaited before the
  // status line goes, so its refusal (or absence) is the HTTP status.
  void stream_chat(const Request& req, Response& res, ChatCall call) {
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
      HttpFront::close_after_response();
      res.set_content_provider("text/event-stream", provider);
    } else {
      res.set_chunked_content_provider("text/event-stream", provider);
    }
  }

  void compare(Response& res, const httplib::ContentReader& reader) {
    const ChatCall call = parse_compare_request(read_body(reader, config.max_body_bytes));
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

  void feedback(Response& res, const httplib::ContentReader& reader) {
    const v1::FeedbackRequest request =
        parse_feedback_request(read_body(reader, config.max_body_bytes));
    grpc::ClientContext context;
    prepare(context);
    v1::FeedbackResponse nothing;
    const grpc::Status s = stub->Feedback(&context, request, &nothing);
    if (!s.ok()) throw error_of(s);
    res.set_content("{}", "application/json");
  }

  // Before routing, before any body is read: framing, Host, and for the
  // API the Origin (CORS), preflights and the token. Probes pass as they are.
  HandlerResponse before_routing(const Request& req, Response& res) const {
    if (is_probe(req)) return HandlerResponse::Unhandled;
    if (const std::optional<HttpError> refusal = framing_refusal(req, config.max_body_bytes)) {
      send_error(res, *refusal);
      return HandlerResponse::Handled;
    }
    const bool no_host = !req.has_header("Host") && req.version == "HTTP/1.0";  // not a browser
    if (!no_host && !access->host_allowed(req.get_header_value("Host"))) {
      send_error(res, {403,
                       fmt::format("the Host {} is not served here (gateway.allowed_hosts)",
                                   quote_value(Json(req.get_header_value("Host")))),
                       "permission_error", "host_not_allowed"});
      return HandlerResponse::Handled;
    }
    if (req.path.rfind("/v1/", 0) != 0) return HandlerResponse::Unhandled;
    if (req.has_header("Origin")) {
      if (!access->origin_allowed(req.get_header_value("Origin"), req.get_header_value("Host"))) {
        send_error(res, {403, "this origin may not call the API (gateway.cors_origins)",
                         "permission_error", "cors"});
        return HandlerResponse::Handled;
      }
      access->add_cors_headers(req, res);
    }
    if (req.method == "OPTIONS") {
      res.status = 204;
      return HandlerResponse::Handled;
    }
    if (!access->authorized(req.get_header_value("Authorization"))) {
      send_error(res, {401, "missing or unknown bearer token (Authorization: Bearer <token>)",
                       "invalid_request_error", "invalid_api_key"});
      return HandlerResponse::Handled;
    }
    return HandlerResponse::Unhandled;
  }

  // httplib's own refusals (unknown path, unreadable request) in OpenAI's form.
  void on_http_error(const Request& req, Response& res) const {
    if (!res.body.empty()) return;
    switch (res.status) {
      case 404:
        send_error(res, {404,
                         fmt::format("no such endpoint: {} {}", req.method,
                                     quote_value(Json(req.path), 200)),
                         "invalid_request_error", "unknown_url"});
        break;
      case 413:
        send_error(res, too_large(config.max_body_bytes));
        break;
      case 414:
        send_error(
            res, {414, "the request target is too long", "invalid_request_error", "uri_too_long"});
        break;
      case 400:
        send_error(res, bad_request("the request is malformed (request line, headers or body)"));
        break;
      default:
        send_error(res,
                   {res.status, fmt::format("the request could not be served ({})", res.status),
                    res.status < 500 ? "invalid_request_error" : "api_error", ""});
    }
  }

  void install_hooks();
  void install_routes();
};

void Gateway::State::install_hooks() {
  HttpFront& http = *server;
  http.set_pre_routing_handler([this](const Request& req, Response& res) {
    t_started = std::chrono::steady_clock::now();
    try {
      return before_routing(req, res);
    } catch (...) {
      send_error(res, {500, "internal error", "api_error", "internal"});
      return HandlerResponse::Handled;
    }
  });
  http.set_error_handler([this](const Request& req, Response& res) {
    try {
      on_http_error(req, res);
    } catch (...) {  // never let the answer to an error fail
      res.body.clear();
    }
  });
  http.set_exception_handler([](const Request&, Response& res, std::exception_ptr) {
    send_error(res, {500, "internal error", "api_error", "internal"});
  });
  // Called once the answer is written (a stream: its last event).
  http.set_logger([this](const Request& req, const Response& res) {
    try {
      metrics->observe(req, res);
    } catch (...) {  // the answer went; a failed count must not end the worker
    }
  });
  // A client that waits for 100 Continue learns of a body over the limit first.
  http.set_expect_100_continue_handler([this](const Request& req, Response& res) {
    if (const std::optional<HttpError> refusal = framing_refusal(req, config.max_body_bytes)) {
      send_error(res, *refusal);
      return refusal->status;
    }
    return 100;
  });
}

void Gateway::State::install_routes() {
  HttpFront& http = *server;
  http.Get("/", [](const Request&, Response& res) {
    res.set_content(std::string(reinterpret_cast<const char*>(kWebPage), kWebPageSize),
                    "text/html; charset=utf-8");
  });
  // Plain GET /healthz is answered by the front itself; this serves the rest (HEAD).
  http.Get("/healthz",
           [](const Request&, Response& res) { res.set_content("ok\n", "text/plain"); });
  http.Get("/readyz", [this](const Request&, Response& res) {
    const bool ready = daemon_serving();
    res.status = ready ? 200 : 503;
    res.set_content(ready ? "ready\n" : "vitrined is not serving\n", "text/plain");
  });
  http.Get("/metrics", [this](const Request&, Response& res) {
    res.set_content(metrics->registry.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/v1/models", [](const Request&, Response& res) {
    res.set_content(json_text(model_list()), "application/json");
  });
  http.Get(R"(/v1/models/[^/]*)", [](const Request& req, Response& res) {
    answer(res, [&] {
      const std::string id = req.path.substr(std::string_view("/v1/models/").size());
      for (const auto& [name, _] : model_routes()) {
        if (name == id) return res.set_content(json_text(model_object(id)), "application/json");
      }
      throw HttpError{404, fmt::format("the model {} does not exist", quote_value(Json(id))),
                      "invalid_request_error", "model_not_found", "model"};
    });
  });
  http.Post("/v1/chat/completions",
            [this](const Request& req, Response& res, const httplib::ContentReader& reader) {
              answer(res, [&] { chat(req, res, reader); });
            });
  http.Post("/v1/compare",
            [this](const Request&, Response& res, const httplib::ContentReader& reader) {
              answer(res, [&] { compare(res, reader); });
            });
  http.Post("/v1/feedback",
            [this](const Request&, Response& res, const httplib::ContentReader& reader) {
              answer(res, [&] { feedback(res, reader); });
            });
  http.Options(R"(/v1/.*)", [](const Request&, Response& res) { res.status = 204; });
}

Gateway::Gateway(GatewayConfig config) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.config = std::move(config);
  std::set<std::string> tokens;
  if (!s.config.tokens_file.empty()) {
    const std::vector<std::string> listed =
        read_token_file(s.config.tokens_file, "gateway.tokens_file");
    tokens = std::set<std::string>(listed.begin(), listed.end());
  }
  s.access = std::make_unique<AccessPolicy>(s.config, std::move(tokens));
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
  s.server = std::make_unique<HttpFront>(
      FrontLimits{.threads = s.config.threads,
                  .max_connections = s.config.max_connections,
                  .idle_timeout_seconds = s.config.idle_timeout_seconds,
                  .header_timeout_seconds = s.config.header_timeout_seconds,
                  .body_timeout_seconds = s.config.body_timeout_seconds,
                  .write_timeout_seconds = s.config.write_timeout_seconds,
                  .max_body_bytes = s.config.max_body_bytes});
  // Bodies with a Content-Length over the limit are refused before routing;
  // this is httplib's own check of the same.
  s.server->set_payload_max_length(static_cast<size_t>(s.config.max_body_bytes));
  s.metrics = std::make_unique<GatewayMetrics>(*s.server);
  s.install_hooks();
  s.install_routes();
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
  if (!state_->server->serve(host, port)) {
    const std::string why = listen_problem(listen);
    throw std::runtime_error(
        fmt::format("cannot listen on '{}'{}{}", listen, why.empty() ? "" : ": ", why));
  }
}

void Gateway::stop() {
  state_->server->shutdown();
}

}  // namespace vitrine::gateway
