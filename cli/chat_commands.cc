// Clients of vitrined's ChatService:
//
//   vitrine ask TEXT [--route auto|describe|qa|base] [--stream] [--json]
//   vitrine compare TEXT [--json]
//   vitrine bench --dataset DIR [--concurrency 1,4,16] [--requests 200]
//
// All take --address, --token (or $VITRINE_TOKEN) and, for TLS, --tls-ca
// (with --tls-cert/--tls-key when the daemon checks client certificates).
// bench is a load generator: titles and questions from the dataset's test
// split, alternating, sent by C concurrent streams of AskStream requests;
// it prints per concurrency the throughput, latency and time-to-first-token
// percentiles, the daemon's routing decision percentiles (the route_ms each
// answer reports), errors by status code and, given --metrics, the daemon's
// resident memory before and after.
#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "common/text_file.h"
#include "vitrine/v1/chat.grpc.pb.h"

namespace vitrine::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct Connection {
  std::string address = "127.0.0.1:50061";
  std::string token;
  std::string tls_ca, tls_cert, tls_key;
  double timeout_s = 120;
};

void add_connection_options(CLI::App* cmd, Connection& c) {
  cmd->add_option("--address", c.address, "vitrined's address")->capture_default_str();
  cmd->add_option("--token", c.token, "bearer token (default: $VITRINE_TOKEN)");
  cmd->add_option("--tls-ca", c.tls_ca, "PEM CA that signed the daemon's certificate: use TLS");
  cmd->add_option("--tls-cert", c.tls_cert, "PEM client certificate (with --tls-key)");
  cmd->add_option("--tls-key", c.tls_key, "PEM client key");
  cmd->add_option("--timeout", c.timeout_s, "seconds per request")->capture_default_str();
}

std::unique_ptr<v1::ChatService::Stub> connect(const Connection& c) {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (c.tls_ca.empty()) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = read_whole_file(c.tls_ca, "--tls-ca");
    if (!c.tls_cert.empty()) {
      o.pem_cert_chain = read_whole_file(c.tls_cert, "--tls-cert");
      o.pem_private_key = read_whole_file(c.tls_key, "--tls-key");
    }
    creds = grpc::SslCredentials(o);
  }
  return v1::ChatService::NewStub(grpc::CreateChannel(c.address, creds));
}

// --token, else $VITRINE_TOKEN, else none.
std::string bearer_token(const Connection& c) {
  if (!c.token.empty()) return c.token;
  const char* env = std::getenv("VITRINE_TOKEN");
  return env != nullptr ? env : "";
}

void prepare_context(grpc::ClientContext& context, const Connection& c) {
  const std::string token = bearer_token(c);
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(c.timeout_s * 1000)));
}

void check(const grpc::Status& status, const Connection& c) {
  if (status.ok()) return;
  throw std::runtime_error(
      status.error_code() == grpc::StatusCode::UNAVAILABLE
          ? fmt::format("vitrined at {} is unavailable: {}", c.address, status.error_message())
          : fmt::format("{} ({})", status.error_message(), static_cast<int>(status.error_code())));
}

v1::Route parse_route(const std::string& word) {
  if (word == "auto") return v1::ROUTE_AUTO;
  if (word == "describe") return v1::ROUTE_DESCRIBE;
  if (word == "qa") return v1::ROUTE_QA;
  if (word == "base") return v1::ROUTE_BASE;
  throw std::invalid_argument(fmt::format("--route: '{}' is not auto, describe, qa or base", word));
}

std::string to_json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

// Who wrote the answer: an adapter, the base model, or no model (a question
// about no known product, answered with the daemon's fixed sentence: no prompt).
std::string answered_by(const v1::AskResponse& r) {
  if (!r.route().adapter().empty()) {
    return fmt::format("adapter {} v{}", r.route().adapter(), r.route().adapter_version());
  }
  if (!r.product_found() && r.usage().prompt_tokens() == 0) return "no model (unknown product)";
  return "base model";
}

void print_answer(const v1::AskResponse& r, bool with_text) {
  if (with_text) std::printf("%s\n", r.text().c_str());
  const v1::RouteTaken& route = r.route();
  std::printf("\nroute: %s, %s", route.agent().c_str(), answered_by(r).c_str());
  std::printf(" (%s, classifier confidence %.2f)\n", route.evidence().c_str(),
              route.classifier_confidence());
  if (r.sources().empty()) {
    std::printf("sources: none (%s)\n",
                r.product_found() ? "-" : "no catalogue product matched the text");
  }
  for (const v1::Source& s : r.sources()) {
    std::printf("source: %s  %s  (match %.2f)\n", s.uid().c_str(), s.title().c_str(), s.score());
  }
  for (const v1::Source& s : r.closest()) {
    std::printf("closest: %s  %s  (match %.2f)\n", s.uid().c_str(), s.title().c_str(), s.score());
  }
  if (!r.experiment().empty()) {
    std::printf("experiment: %s, arm %s\n", r.experiment().c_str(), r.arm().c_str());
  }
  std::printf(
      "tokens: %ld prompt, %ld generated (%s); route %.3f ms, queue %.1f ms, first token "
      "%.1f ms, total %.1f ms; id %s\n",
      static_cast<long>(r.usage().prompt_tokens()),
      static_cast<long>(r.usage().completion_tokens()), r.finish_reason().c_str(),
      r.timings().route_ms(), r.timings().queue_ms(), r.timings().first_token_ms(),
      r.timings().total_ms(), r.response_id().c_str());
}

struct AskArgs {
  Connection connection;
  std::string text;
  std::string route = "auto";
  std::string user;
  int max_new_tokens = 0;
  double temperature = 0;
  uint64_t seed = 0;
  bool stream = false;
  bool json = false;
};

v1::AskRequest ask_request(const AskArgs& a) {
  v1::AskRequest request;
  request.set_text(a.text);
  request.set_route(parse_route(a.route));
  request.set_user_id(a.user);
  request.mutable_generation()->set_max_new_tokens(a.max_new_tokens);
  request.mutable_generation()->set_temperature(a.temperature);
  request.mutable_generation()->set_seed(a.seed);
  return request;
}

void add_ask_options(CLI::App* cmd, AskArgs& a) {
  add_connection_options(cmd, a.connection);
  cmd->add_option("text", a.text, "a product title or a question about a product")->required();
  cmd->add_option("--route", a.route, "auto (the classifier decides), describe, qa or base")
      ->capture_default_str();
  cmd->add_option("--user", a.user, "user id (experiments place a user stably)");
  cmd->add_option("--max-new-tokens", a.max_new_tokens, "0 = the daemon's default");
  cmd->add_option("--temperature", a.temperature, "0 = greedy");
  cmd->add_option("--seed", a.seed, "sampling seed");
  cmd->add_flag("--json", a.json, "print the whole response as JSON");
}

int ask(const AskArgs& a) {
  auto stub = connect(a.connection);
  grpc::ClientContext context;
  prepare_context(context, a.connection);
  const v1::AskRequest request = ask_request(a);
  if (!a.stream) {
    v1::AskResponse response;
    check(stub->Ask(&context, request, &response), a.connection);
    if (a.json) {
      std::printf("%s\n", to_json(response).c_str());
    } else {
      print_answer(response, true);
    }
    return 0;
  }
  auto reader = stub->AskStream(&context, request);
  v1::AskStreamEvent event;
  v1::AskResponse answer;
  while (reader->Read(&event)) {
    if (event.has_answer()) {
      answer = event.answer();
    } else if (!a.json) {
      std::fputs(event.text().c_str(), stdout);
      std::fflush(stdout);
    }
  }
  check(reader->Finish(), a.connection);
  if (a.json) {
    std::printf("%s\n", to_json(answer).c_str());
  } else {
    std::printf("\n");
    print_answer(answer, false);
  }
  return 0;
}

int compare(const AskArgs& a) {
  auto stub = connect(a.connection);
  grpc::ClientContext context;
  prepare_context(context, a.connection);
  v1::CompareResponse response;
  check(stub->Compare(&context, ask_request(a), &response), a.connection);
  if (a.json) {
    std::printf("%s\n", to_json(response).c_str());
    return 0;
  }
  std::printf("== %s (%.0f ms)\n", answered_by(response.base()).c_str(),
              response.base().timings().total_ms());
  std::printf("%s\n", response.base().text().c_str());
  std::printf("\n== tuned: %s (%.0f ms)\n", answered_by(response.tuned()).c_str(),
              response.tuned().timings().total_ms());
  print_answer(response.tuned(), true);
  return 0;
}

// ---- bench ----------------------------------------------------------------

struct BenchArgs {
  Connection connection;
  std::string dataset = "out/dataset";
  std::string concurrency = "1,4,16";
  int requests = 200;
  int max_new_tokens = 32;
  std::string metrics;  // host:port of the daemon's /metrics
  std::string gateway;  // http://host:port: through vitrine-gateway instead of gRPC
  std::string json_out;
};

// Titles (describe's test prompts) and questions (qa's), alternating.
std::vector<std::string> bench_texts(const std::string& dataset) {
  auto read = [&](const std::string& task, const char* key) {
    const std::string path = dataset + "/tasks/" + task + "/test.jsonl";
    std::ifstream in(path);
    if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", path));
    std::vector<std::string> out;
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) out.push_back(nlohmann::json::parse(line).at(key).get<std::string>());
    }
    return out;
  };
  const std::vector<std::string> titles = read("describe", "prompt");
  const std::vector<std::string> questions = read("qa", "question");
  std::vector<std::string> mix;
  for (size_t i = 0; i < std::max(titles.size(), questions.size()); ++i) {
    if (i < titles.size()) mix.push_back(titles[i]);
    if (i < questions.size()) mix.push_back(questions[i]);
  }
  if (mix.empty()) throw std::runtime_error(fmt::format("no test texts under '{}'", dataset));
  return mix;
}

// The daemon's resident memory in MiB from its /metrics; -1 when unknown.
double daemon_rss_mib(const std::string& address) {
  if (address.empty()) return -1;
  httplib::Client client("http://" + address);
  client.set_connection_timeout(5);
  const auto r = client.Get("/metrics");
  if (!r || r->status != 200) return -1;
  std::istringstream lines(r->body);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("process_resident_memory_bytes ", 0) == 0) {
      return std::stod(line.substr(line.find(' ') + 1)) / (1024.0 * 1024.0);
    }
  }
  return -1;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

// One request's outcome as the client saw it.
struct Sent {
  bool ok = false;
  std::string error;     // a status or HTTP code when not ok
  double first = -1;     // ms to the first piece of text
  int64_t tokens = 0;    // generated, as the answer reports
  double route_ms = -1;  // the daemon's routing decision, as the answer reports
};

// Through vitrine-gateway: a streaming chat completion (SSE) with usage.
Sent send_http(httplib::Client& http, const std::string& token, const std::string& text,
               int max_tokens, const std::string& user) {
  const nlohmann::json body = {
      {"model", "vitrine"},       {"messages", {{{"role", "user"}, {"content", text}}}},
      {"max_tokens", max_tokens}, {"user", user},
      {"stream", true},           {"stream_options", {{"include_usage", true}}}};
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  if (!token.empty()) req.set_header("Authorization", "Bearer " + token);
  const Clock::time_point sent = Clock::now();
  Sent out;
  std::string pending;
  req.content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
    pending.append(data, length);
    for (size_t end; (end = pending.find("\n\n")) != std::string::npos; pending.erase(0, end + 2)) {
      const std::string event = pending.substr(0, end);
      if (event.rfind("data: {", 0) != 0) continue;
      const nlohmann::json chunk = nlohmann::json::parse(event.substr(6));
      if (chunk.contains("usage") && chunk["usage"].is_object()) {
        out.tokens = chunk["usage"]["completion_tokens"];
      }
      if (chunk.contains("vitrine") && chunk["vitrine"].contains("timings")) {
        out.route_ms = chunk["vitrine"]["timings"].value("route_ms", -1.0);
      }
      if (chunk.contains("error")) out.error = chunk["error"].value("code", "error");
      if (out.first < 0 && chunk.contains("choices") && !chunk["choices"].empty() &&
          !chunk["choices"][0]["delta"].value("content", "").empty()) {
        out.first = std::chrono::duration<double, std::milli>(Clock::now() - sent).count();
      }
    }
    return true;
  };
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  if (!http.send(req, res, error)) {
    out.error = httplib::to_string(error);
  } else if (res.status != 200) {
    out.error = fmt::format("HTTP {}", res.status);
  } else {
    out.ok = out.error.empty();
  }
  return out;
}

// Through gRPC: AskStream.
Sent send_grpc(v1::ChatService::Stub& stub, const Connection& c, const std::string& text,
               int max_tokens, const std::string& user) {
  grpc::ClientContext context;
  prepare_context(context, c);
  v1::AskRequest request;
  request.set_text(text);
  request.mutable_generation()->set_max_new_tokens(max_tokens);
  request.set_user_id(user);
  const Clock::time_point sent = Clock::now();
  Sent out;
  auto reader = stub.AskStream(&context, request);
  v1::AskStreamEvent event;
  while (reader->Read(&event)) {
    if (event.has_answer()) {
      out.tokens = event.answer().usage().completion_tokens();
      out.route_ms = event.answer().timings().route_ms();
    } else if (out.first < 0) {
      out.first = std::chrono::duration<double, std::milli>(Clock::now() - sent).count();
    }
  }
  const grpc::Status status = reader->Finish();
  out.ok = status.ok();
  if (!out.ok) out.error = fmt::format("code {}", static_cast<int>(status.error_code()));
  return out;
}

struct BenchLevel {
  int concurrency = 0;
  int requests = 0;
  std::map<std::string, int> errors;  // by status code name
  double seconds = 0;
  int64_t tokens = 0;
  std::vector<double> latency_ms, first_token_ms;
  std::vector<double> route_us;  // the daemon's routing decisions, in microseconds
};

BenchLevel bench_level(const BenchArgs& a, const std::vector<std::string>& texts, int concurrency) {
  BenchLevel level;
  level.concurrency = concurrency;
  level.requests = a.requests;
  std::mutex mutex;
  std::atomic<int> next{0};
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < concurrency; ++w) {
    workers.emplace_back([&] {
      auto stub = connect(a.connection);
      std::unique_ptr<httplib::Client> http;
      if (!a.gateway.empty()) {
        http = std::make_unique<httplib::Client>(a.gateway);
        http->set_read_timeout(static_cast<time_t>(a.connection.timeout_s));
        http->set_tcp_nodelay(true);
      }
      const std::string token = bearer_token(a.connection);
      for (int i = next++; i < a.requests; i = next++) {
        const std::string& text = texts[static_cast<size_t>(i) % texts.size()];
        const std::string user = fmt::format("bench-{}", i);
        const Clock::time_point sent = Clock::now();
        const Sent r = http ? send_http(*http, token, text, a.max_new_tokens, user)
                            : send_grpc(*stub, a.connection, text, a.max_new_tokens, user);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - sent).count();
        std::lock_guard lock(mutex);
        if (!r.ok) {
          ++level.errors[r.error];
          continue;
        }
        level.tokens += r.tokens;
        level.latency_ms.push_back(ms);
        if (r.first >= 0) level.first_token_ms.push_back(r.first);
        if (r.route_ms >= 0) level.route_us.push_back(1000 * r.route_ms);
      }
    });
  }
  for (auto& t : workers) t.join();
  level.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return level;
}

int bench(const BenchArgs& a) {
  std::vector<int> levels;
  std::stringstream ss(a.concurrency);
  for (std::string item; std::getline(ss, item, ',');) {
    const int c = std::stoi(item);
    if (c < 1) throw std::invalid_argument("--concurrency: levels must be >= 1");
    levels.push_back(c);
  }
  const std::vector<std::string> texts = bench_texts(a.dataset);
  const double rss_before = daemon_rss_mib(a.metrics);
  std::printf("%11s %8s %7s %9s %10s %9s %9s %9s %10s %10s %11s %11s\n", "concurrency", "requests",
              "errors", "seconds", "tokens/s", "req/s", "p50 ms", "p99 ms", "ttft p50", "ttft p99",
              "route p50", "route p99");
  nlohmann::json report = nlohmann::json::array();
  int total_errors = 0;
  for (const int c : levels) {
    const BenchLevel l = bench_level(a, texts, c);
    int errors = 0;
    for (const auto& [_, n] : l.errors) errors += n;
    total_errors += errors;
    const double tps = static_cast<double>(l.tokens) / l.seconds;
    std::printf("%11d %8d %7d %9.2f %10.1f %9.2f %9.1f %9.1f %10.1f %10.1f %8.0f us %8.0f us\n", c,
                l.requests, errors, l.seconds, tps,
                static_cast<double>(l.requests - errors) / l.seconds, percentile(l.latency_ms, 50),
                percentile(l.latency_ms, 99), percentile(l.first_token_ms, 50),
                percentile(l.first_token_ms, 99), percentile(l.route_us, 50),
                percentile(l.route_us, 99));
    for (const auto& [code, n] : l.errors) std::printf("  errors: %d with %s\n", n, code.c_str());
    std::fflush(stdout);
    report.push_back({{"concurrency", c},
                      {"requests", l.requests},
                      {"errors", errors},
                      {"seconds", l.seconds},
                      {"tokens", l.tokens},
                      {"tokens_per_second", tps},
                      {"latency_ms_p50", percentile(l.latency_ms, 50)},
                      {"latency_ms_p99", percentile(l.latency_ms, 99)},
                      {"first_token_ms_p50", percentile(l.first_token_ms, 50)},
                      {"first_token_ms_p99", percentile(l.first_token_ms, 99)},
                      {"route_decisions", l.route_us.size()},
                      {"route_us_p50", percentile(l.route_us, 50)},
                      {"route_us_p99", percentile(l.route_us, 99)}});
  }
  const double rss_after = daemon_rss_mib(a.metrics);
  if (rss_before >= 0)
    std::printf("daemon RSS: %.1f MiB before, %.1f MiB after\n", rss_before, rss_after);
  if (!a.json_out.empty()) {
    std::ofstream out(a.json_out);
    out << nlohmann::json{{"levels", report},
                          {"rss_mib_before", rss_before},
                          {"rss_mib_after", rss_after}}
               .dump(2)
        << "\n";
  }
  return total_errors == 0 ? 0 : 1;
}

template <typename Body>
int guarded(const char* name, Body&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitrine %s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace

Command add_ask_command(CLI::App& app) {
  auto args = std::make_shared<AskArgs>();
  CLI::App* cmd =
      app.add_subcommand("ask", "ask vitrined: a title is described, a question answered");
  add_ask_options(cmd, *args);
  cmd->add_flag("--stream", args->stream, "print the answer as it is generated");
  return {cmd, [args] { return guarded("ask", [&] { return ask(*args); }); }};
}

Command add_compare_command(CLI::App& app) {
  auto args = std::make_shared<AskArgs>();
  CLI::App* cmd =
      app.add_subcommand("compare", "the same request answered by the base model and the adapter");
  add_ask_options(cmd, *args);
  return {cmd, [args] { return guarded("compare", [&] { return compare(*args); }); }};
}

Command add_bench_command(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd =
      app.add_subcommand("bench", "load vitrined with the dataset's test titles and questions");
  add_connection_options(cmd, args->connection);
  cmd->add_option("--dataset", args->dataset, "prepared dataset (tasks/*/test.jsonl)")
      ->capture_default_str();
  cmd->add_option("--concurrency", args->concurrency, "levels, comma-separated")
      ->capture_default_str();
  cmd->add_option("--requests", args->requests, "requests per level")->capture_default_str();
  cmd->add_option("--max-new-tokens", args->max_new_tokens, "tokens per answer at most")
      ->capture_default_str();
  cmd->add_option("--metrics", args->metrics, "the daemon's metrics address, for its RSS");
  cmd->add_option("--gateway", args->gateway,
                  "send through vitrine-gateway at this URL (http://host:port) instead of gRPC");
  cmd->add_option("--json", args->json_out, "also write the figures to this file");
  return {cmd, [args] { return guarded("bench", [&] { return bench(*args); }); }};
}

}  // namespace vitrine::cli
