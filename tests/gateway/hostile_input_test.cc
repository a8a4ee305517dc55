// vitrine-gateway against hostile and sloppy clients, on loopback with no
// daemon behind it: request targets that are not UTF-8, bodies over the
// limit whatever their framing, clients that trickle their headers (slow
// loris), too many connections, and Host headers a DNS-rebinding page sends.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "tests/gateway/gateway_process.h"
#include "tests/gateway/raw_http.h"
#include "tests/support/ports.h"
#include "tests/support/run_vitrine.h"

namespace vitrine {
namespace {

using Json = nlohmann::json;
using testing::GatewayProcess;
using testing::RawConnection;
using namespace std::chrono_literals;

// The error object of an OpenAI error body, or null when the body is not one.
Json error_of(const std::string& body) {
  const Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  return j.is_object() && j.contains("error") ? j["error"] : Json();
}

std::string get(const std::string& target, const std::string& host,
                const std::string& extra_headers = "") {
  return fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\n{}Connection: close\r\n\r\n", target, host,
                     extra_headers);
}

TEST(GatewayHostileInput, ATargetThatIsNotUtf8GetsA404AndTheGatewayLives) {
  GatewayProcess gw;
  ASSERT_TRUE(gw.ready());
  for (const char* target :
       {"/%ff", "/%c0%ae%c0%ae/etc/passwd", "/v1/%ff%fe", "/v1/models/%ff", "/%00%ff?x=%ff"}) {
    RawConnection c(gw.address());
    ASSERT_TRUE(c.send(get(target, gw.host())));
    c.read_until_closed(5s);
    EXPECT_EQ(c.status(), 404) << target << ": " << c.received();
    const Json error = error_of(c.body());
    EXPECT_EQ(error["type"], "invalid_request_error") << target << ": " << c.received();
    ASSERT_TRUE(gw.running()) << "the gateway died on GET " << target;
  }
  const auto health = gw.client().Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

// Sends `body` as a chunked POST in 64 KiB chunks from another thread (the
// gateway may answer and close before it is all sent) and returns what came back.
std::string post_chunked(const GatewayProcess& gw, const std::string& body,
                         const std::string& extra_headers = "") {
  RawConnection c(gw.address());
  const std::string head = fmt::format(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n"
      "{}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
      gw.host(), extra_headers);
  if (!c.send(head)) return "";
  std::thread sender([&] {
    for (size_t at = 0; at < body.size(); at += 65536) {
      const std::string piece = body.substr(at, 65536);
      if (!c.send(fmt::format("{:x}\r\n{}\r\n", piece.size(), piece))) return;
    }
    c.send("0\r\n\r\n");
  });
  c.read_until_closed(20s);
  sender.join();
  return c.received();
}

TEST(GatewayHostileInput, ChunkedBodiesOverTheLimitGet413) {
  GatewayProcess gw(Json{{"max_body_bytes", 4096}});
  ASSERT_TRUE(gw.ready());
  // 4 MB, valid JSON: read whole, it would reach the daemon (and get 503 here).
  const Json big = {{"model", "vitrine"},
                    {"messages", {{{"role", "user"}, {"content", std::string(4 << 20, 'a')}}}}};
  std::string response = post_chunked(gw, big.dump());
  ASSERT_FALSE(response.empty());
  EXPECT_EQ(response.substr(9, 3), "413") << response.substr(0, 400);
  EXPECT_EQ(error_of(response.substr(response.find("\r\n\r\n") + 4))["code"], "request_too_large")
      << response.substr(0, 400);
  // Just over the limit is over it too.
  const Json over = {{"model", "vitrine"},
                     {"messages", {{{"role", "user"}, {"content", std::string(4100, 'a')}}}}};
  response = post_chunked(gw, over.dump());
  EXPECT_EQ(response.substr(0, 12), "HTTP/1.1 413") << response.substr(0, 400);
  // A compressed body could hide any size: refused before it is read.
  response = post_chunked(gw, "\x1f\x8b", "Content-Encoding: gzip\r\n");
  EXPECT_EQ(response.substr(0, 12), "HTTP/1.1 415") << response.substr(0, 400);
  // Under the limit, chunked is fine: it reaches the (absent) daemon.
  const Json small = {{"model", "vitrine"},
                      {"messages", {{{"role", "user"}, {"content", "Dune"}}}}};
  response = post_chunked(gw, small.dump());
  EXPECT_EQ(response.substr(0, 12), "HTTP/1.1 503") << response.substr(0, 400);
  EXPECT_TRUE(gw.running());
}

// Opens `n` connections that each sent the start of a request and no more.
std::vector<std::unique_ptr<RawConnection>> open_slow(const GatewayProcess& gw, int n) {
  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < n; ++i) {
    slow.push_back(std::make_unique<RawConnection>(gw.address()));
    EXPECT_TRUE(slow.back()->connected());
    slow.back()->send(fmt::format("GET /v1/models HTTP/1.1\r\nHost: {}\r\n", gw.host()));
  }
  return slow;
}

// The time GET `path` takes on a fresh connection (60 s when it fails).
std::chrono::milliseconds time_get(const GatewayProcess& gw, const char* path, int& status) {
  const auto start = std::chrono::steady_clock::now();
  httplib::Client c = gw.client(/*read_timeout_seconds=*/5);
  const auto r = c.Get(path);
  status = r ? r->status : -1;
  if (!r) return 60s;
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start);
}

TEST(GatewayHostileInput, SlowHeaderClientsLeaveHealthChecksAndTheApiServed) {
  GatewayProcess gw;  // the default 8 worker threads
  ASSERT_TRUE(gw.ready());
  // Slow loris: three times as many connections as workers, each trickling
  // a header byte every 200 ms while the probes run.
  auto slow = open_slow(gw, 24);
  std::atomic<bool> done{false};
  std::thread trickle([&] {
    for (int round = 0; round < 40 && !done; ++round) {
      for (auto& c : slow) c->send("X");
      std::this_thread::sleep_for(200ms);
    }
  });
  std::this_thread::sleep_for(300ms);
  int status = 0;
  const auto health = time_get(gw, "/healthz", status);
  EXPECT_EQ(status, 200);
  EXPECT_LT(health, 2s) << "/healthz took " << health.count() << " ms";
  const auto models = time_get(gw, "/v1/models", status);
  EXPECT_EQ(status, 200);
  EXPECT_LT(models, 2s) << "/v1/models took " << models.count() << " ms";
  done = true;
  trickle.join();
}

TEST(GatewayHostileInput, SlowClientsAreCutAtTheHeaderAndBodyTimeouts) {
  GatewayProcess gw(Json{
      {"header_timeout_seconds", 1}, {"body_timeout_seconds", 1}, {"idle_timeout_seconds", 1}});
  ASSERT_TRUE(gw.ready());
  RawConnection head(gw.address()), body(gw.address()), idle(gw.address());
  head.send("GET /v1/models HTTP/1.1\r\nHost: x\r\n");
  body.send(fmt::format(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Length: 200\r\n\r\n{{\"model\"",
      gw.host()));
  const auto start = std::chrono::steady_clock::now();
  std::thread trickle([&] {
    for (int i = 0; i < 20; ++i) {  // a byte every 150 ms, for up to 3 s
      head.send("X");
      body.send(" ");
      std::this_thread::sleep_for(150ms);
    }
  });
  EXPECT_TRUE(head.read_until_closed(4s)) << "a trickled head was not cut";
  EXPECT_EQ(head.status(), 408) << head.received();
  EXPECT_TRUE(body.read_until_closed(4s)) << "a trickled body was not cut";
  EXPECT_EQ(body.status(), 408) << body.received();
  EXPECT_TRUE(idle.read_until_closed(3s)) << "an idle connection was kept";
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  trickle.join();
}

TEST(GatewayHostileInput, PastTheConnectionLimitTheLongestWaitingMakesRoom) {
  GatewayProcess gw(Json{{"max_connections", 16}});
  ASSERT_TRUE(gw.ready());
  auto slow = open_slow(gw, 48);  // three times the limit, none finishing its head
  std::this_thread::sleep_for(200ms);
  int status = 0;
  const auto health = time_get(gw, "/healthz", status);
  EXPECT_EQ(status, 200);
  EXPECT_LT(health, 2s) << "/healthz took " << health.count() << " ms";
  const auto models = time_get(gw, "/v1/models", status);
  EXPECT_EQ(status, 200);
  EXPECT_LT(models, 2s);
  // The oldest slow connections were closed to make that room.
  EXPECT_TRUE(slow.front()->read_until_closed(1s));
  EXPECT_TRUE(gw.running());
}

TEST(GatewayHostileInput, APortAnotherProcessHoldsIsRefusedNamingIt) {
  // Held as a running server holds it, SO_REUSEPORT included: a second
  // gateway must not start "serving" and take half the traffic.
  const testing::HeldPort held;
  const testing::CliRun r = testing::run_program(
      "gateway/vitrine-gateway", fmt::format("--listen 127.0.0.1:{}", held.port()));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(fmt::format("cannot listen on '127.0.0.1:{}'", held.port())),
            std::string::npos)
      << r.output;
}

TEST(GatewayMetrics, RequestsAreCountedByPathAndStatusWithBoundedLabels) {
  GatewayProcess gw(Json{{"header_timeout_seconds", 1}});
  ASSERT_TRUE(gw.ready());
  httplib::Client c = gw.client();
  EXPECT_EQ(c.Get("/v1/models")->status, 200);
  for (int i = 0; i < 3; ++i) {  // made-up paths share one label
    EXPECT_EQ(c.Get(fmt::format("/no/such/path/{}", i))->status, 404);
  }
  EXPECT_EQ(c.Get("/v1/models/gpt-4")->status, 404);
  RawConnection slow(gw.address());
  slow.send("GET /v1/models HTTP/1.1\r\nHost: x\r\n");  // never ends its head: 408
  EXPECT_TRUE(slow.read_until_closed(4s));
  // Prometheus names the pod's address as Host, with no token.
  RawConnection scrape(gw.address());
  scrape.send(get("/metrics", "10.1.2.3:8080"));
  ASSERT_TRUE(scrape.read_until_closed(5s));
  EXPECT_EQ(scrape.status(), 200) << scrape.received();
  const std::string text = scrape.received();
  for (const std::string line :
       {"Content-Type: text/plain; version=0.0.4",
        "vitrine_gateway_requests_total{path=\"/v1/models\",status=\"200\"} 1",
        "vitrine_gateway_requests_total{path=\"other\",status=\"404\"} 3",
        "vitrine_gateway_requests_total{path=\"/v1/models/{id}\",status=\"404\"} 1",
        "vitrine_gateway_request_seconds_count{path=\"/v1/models\"} 1",
        "vitrine_gateway_timed_out_requests 1", "vitrine_gateway_open_connections ",
        "process_resident_memory_bytes "}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
  EXPECT_EQ(text.find("/no/such/path"), std::string::npos) << text;
}

TEST(GatewayHostileInput, OnlyAllowedHostsAreServed) {
  GatewayProcess gw(Json{{"cors_origins", {"https://chat.example"}}});
  ASSERT_TRUE(gw.ready());
  const int port = gw.port();
  auto status = [&](const std::string& target, const std::string& host,
                    const std::string& extra = "") {
    RawConnection c(gw.address());
    c.send(get(target, host, extra));
    c.read_until_closed(5s);
    return std::make_pair(c.status(), c.received());
  };
  // The listen address's loopback names, at its port.
  for (const std::string& host :
       {fmt::format("127.0.0.1:{}", port), fmt::format("localhost:{}", port),
        fmt::format("LocalHost:{}", port), fmt::format("[::1]:{}", port)}) {
    EXPECT_EQ(status("/v1/models", host).first, 200) << host;
  }
  // A DNS-rebinding page's Host is its own name: refused, the page too.
  for (const std::string& host : {std::string("evil.example"), fmt::format("evil.example:{}", port),
                                  fmt::format("127.0.0.1.evil.example:{}", port),
                                  std::string("localhost:1"), std::string("localhost")}) {
    const auto [code, response] = status("/v1/models", host);
    EXPECT_EQ(code, 403) << host;
    EXPECT_EQ(error_of(response.substr(response.find("\r\n\r\n") + 4))["code"], "host_not_allowed")
        << response;
    EXPECT_EQ(status("/", host).first, 403) << host;
  }
  // Probes come with the pod's address as Host: always answered.
  EXPECT_EQ(status("/healthz", "10.1.2.3:8080").first, 200);
  // An Origin is allowed only when it names an allowed host (or is configured).
  const std::string host = fmt::format("127.0.0.1:{}", port);
  EXPECT_EQ(
      status("/v1/models", host, fmt::format("Origin: http://evil.example:{}\r\n", port)).first,
      403);
  const auto [code, response] =
      status("/v1/models", host, fmt::format("Origin: http://localhost:{}\r\n", port));
  EXPECT_EQ(code, 200);
  EXPECT_NE(response.find(fmt::format("Access-Control-Allow-Origin: http://localhost:{}", port)),
            std::string::npos)
      << response;
  EXPECT_EQ(status("/v1/models", host, "Origin: https://chat.example\r\n").first, 200);

  // An explicit list replaces the default.
  GatewayProcess listed(Json{{"allowed_hosts", {"chat.example.com", "gw.internal:8080"}}});
  ASSERT_TRUE(listed.ready());
  auto listed_status = [&](const std::string& host) {
    RawConnection c(listed.address());
    c.send(get("/v1/models", host));
    c.read_until_closed(5s);
    return c.status();
  };
  EXPECT_EQ(listed_status("chat.example.com"), 200);
  EXPECT_EQ(listed_status("Chat.Example.Com:80"), 200);
  EXPECT_EQ(listed_status("gw.internal:8080"), 200);
  EXPECT_EQ(listed_status("gw.internal:9090"), 403);
  EXPECT_EQ(listed_status(listed.host()), 403);
}

}  // namespace
}  // namespace vitrine
