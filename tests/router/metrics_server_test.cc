// The daemon's /metrics endpoint, served over real HTTP on loopback.
#include "router/metrics_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <stdexcept>
#include <string>

#include "tests/support/expect_error.h"

namespace vitrine::router {
namespace {

using testing::expect_throw_naming;

TEST(MetricsHttpServer, ServesMetricsOnLoopbackAnd404Elsewhere) {
  MetricsRegistry m;
  Counter& scrapes = m.counter("scrapes_total", "h");
  MetricsHttpServer server(m, "127.0.0.1:0");
  server.start();
  ASSERT_GT(server.port(), 0);

  httplib::Client client("127.0.0.1", server.port());
  httplib::Result first = client.Get("/metrics");
  ASSERT_TRUE(first) << httplib::to_string(first.error());
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(first->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(first->body, "# HELP scrapes_total h\n# TYPE scrapes_total counter\nscrapes_total 0\n");

  scrapes.inc();
  httplib::Result second = client.Get("/metrics");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->body, m.render());
  EXPECT_NE(second->body.find("scrapes_total 1\n"), std::string::npos);

  for (const char* path : {"/", "/metrics/extra", "/healthz"}) {
    httplib::Result other = client.Get(path);
    ASSERT_TRUE(other) << path;
    EXPECT_EQ(other->status, 404) << path;
  }

  server.stop();
  server.stop();  // idempotent
  httplib::Client after("127.0.0.1", server.port());
  after.set_connection_timeout(1);
  EXPECT_FALSE(after.Get("/metrics")) << "still serving after stop()";
}

TEST(MetricsHttpServer, SecondServerOnTheSamePortFailsNamingTheAddress) {
  MetricsRegistry m;
  MetricsHttpServer first(m, "127.0.0.1:0");
  first.start();
  const std::string address = "127.0.0.1:" + std::to_string(first.port());
  MetricsHttpServer second(m, address);
  expect_throw_naming<std::runtime_error>([&] { second.start(); }, address);
  expect_throw_naming<std::logic_error>([&] { first.start(); }, "running already");
}

TEST(MetricsHttpServer, DestructorStopsAndFreesThePort) {
  MetricsRegistry m;
  int port = 0;
  {
    MetricsHttpServer server(m, "127.0.0.1:0");
    server.start();
    port = server.port();
  }
  MetricsHttpServer again(m, "127.0.0.1:" + std::to_string(port));
  EXPECT_NO_THROW(again.start());
  httplib::Client client("127.0.0.1", port);
  httplib::Result r = client.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(MetricsHttpServer, RejectsMalformedAddresses) {
  MetricsRegistry m;
  for (const std::string address :
       {"localhost", "127.0.0.1:http", "::1:9464", "127.0.0.1:70000", "127.0.0.1:", "[::1]9464"}) {
    MetricsHttpServer server(m, address);
    expect_throw_naming<std::invalid_argument>([&] { server.start(); }, "'" + address + "'");
  }
}

}  // namespace
}  // namespace vitrine::router
