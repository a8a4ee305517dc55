// vitrine-gateway's side of the OpenAI protocol, on loopback with no daemon
// behind it: parameters of the wrong type or not implemented get a 400 that
// names them; requests that pass reach the daemon (here: 503, it is down),
// streaming ones included; models.retrieve; CORS preflights as the openai
// SDK sends them from a browser; HTTP/1.0; the program's exit codes.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tests/gateway/gateway_process.h"
#include "tests/gateway/raw_http.h"
#include "tests/support/program_exit.h"
#include "tests/support/run_vitrine.h"

namespace vitrine {
namespace {

using Json = nlohmann::json;
using testing::GatewayProcess;
using testing::RawConnection;
using namespace std::chrono_literals;

Json request_with(const Json& changes) {
  Json j = {{"model", "vitrine"}, {"messages", {{{"role", "user"}, {"content", "Dune"}}}}};
  j.update(changes);
  return j;
}

// POSTs `body` to `path`; the status and the error object (null if none).
std::pair<int, Json> post(const GatewayProcess& gw, const std::string& body,
                          const std::string& path = "/v1/chat/completions") {
  httplib::Client c = gw.client();
  const auto r = c.Post(path, body, "application/json");
  if (!r) return {-1, Json()};
  const Json j = Json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  return {r->status, j.is_object() && j.contains("error") ? j["error"] : Json()};
}

// Expects a 400 whose error names `param`.
void expect_refused(const GatewayProcess& gw, const std::string& body, const std::string& param,
                    const std::string& path = "/v1/chat/completions") {
  const auto [status, error] = post(gw, body, path);
  EXPECT_EQ(status, 400) << body;
  EXPECT_EQ(error["type"], "invalid_request_error") << body;
  EXPECT_EQ(error["param"], param) << body << " -> " << error.dump();
  ASSERT_TRUE(error["message"].is_string()) << body;
  EXPECT_NE(error["message"].get<std::string>().find(param.substr(0, param.find_first_of(".["))),
            std::string::npos)
      << "the message does not name " << param << ": " << error["message"];
}

// Expects the request to pass the gateway and reach the (absent) daemon.
void expect_passed(const GatewayProcess& gw, const std::string& body,
                   const std::string& path = "/v1/chat/completions") {
  const auto [status, error] = post(gw, body, path);
  EXPECT_EQ(status, 503) << body << " -> " << error.dump();
  EXPECT_EQ(error["code"], "unavailable") << body;
}

TEST(GatewayProtocol, MistypedParametersGetA400NamingTheParameter) {
  GatewayProcess gw;
  ASSERT_TRUE(gw.ready());
  // A body that is not UTF-8: refused as JSON, and the answer is JSON itself.
  const auto [status, error] =
      post(gw, R"({"model": "vitrine", "messages": [{"role": "user", "content": ")" +
                   std::string("\xff\xfe") + "\"}]}");
  EXPECT_EQ(status, 400);
  EXPECT_EQ(error["code"], "invalid_json");
  expect_refused(gw, request_with({{"model", 123}}).dump(), "model");
  expect_refused(gw, request_with({{"stream", "yes"}}).dump(), "stream");
  expect_refused(gw, request_with({{"stream_options", {{"include_usage", "yes"}}}}).dump(),
                 "stream_options.include_usage");
  expect_refused(gw, request_with({{"stream_options", 3}}).dump(), "stream_options");
  expect_refused(
      gw, request_with({{"messages", {{{"role", "user"}, {"content", {{{"type", 5}}}}}}}}).dump(),
      "messages[0].content[0].type");
  expect_refused(
      gw,
      request_with(
          {{"messages", {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", 7}}}}}}}})
          .dump(),
      "messages[0].content[0].text");
  expect_refused(gw, request_with({{"messages", {{{"role", "user"}, {"content", 5}}}}}).dump(),
                 "messages[0].content");
  expect_refused(gw, request_with({{"messages", {{{"role", 1}, {"content", "x"}}}}}).dump(),
                 "messages[0].role");
  expect_refused(gw, request_with({{"messages", "Dune"}}).dump(), "messages");
  expect_refused(gw, request_with({{"temperature", "hot"}}).dump(), "temperature");
  expect_refused(gw, request_with({{"temperature", 2.5}}).dump(), "temperature");
  expect_refused(gw, request_with({{"top_p", 1.5}}).dump(), "top_p");
  expect_refused(gw, request_with({{"seed", 1.5}}).dump(), "seed");
  expect_refused(gw, request_with({{"user", 5}}).dump(), "user");
  // The page's own endpoints check their types too.
  expect_refused(gw, Json({{"text", "Dune"}, {"model", 123}}).dump(), "model", "/v1/compare");
  expect_refused(gw, Json({{"text", 5}}).dump(), "text", "/v1/compare");
  expect_refused(gw, Json({{"text", "Dune"}, {"max_tokens", -1}}).dump(), "max_tokens",
                 "/v1/compare");
  expect_refused(gw, Json({{"response_id", "r"}, {"rating", 2}}).dump(), "rating", "/v1/feedback");
  expect_refused(gw, Json({{"response_id", "r"}, {"rating", 1}, {"comment", 3}}).dump(), "comment",
                 "/v1/feedback");
  // null is "not given", as in OpenAI's API.
  expect_passed(gw, request_with({{"stream", nullptr}, {"temperature", nullptr}}).dump());
  expect_passed(gw, request_with({{"stream_options", nullptr}}).dump());
  EXPECT_TRUE(gw.running());
}

TEST(GatewayProtocol, MaxTokensMustBeAPositiveInteger) {
  GatewayProcess gw;
  ASSERT_TRUE(gw.ready());
  for (const Json& bad : {Json(-1), Json(0), Json(2.9), Json("12"), Json(true), Json(-1e20)}) {
    expect_refused(gw, request_with({{"max_tokens", bad}}).dump(), "max_tokens");
    expect_refused(gw, request_with({{"max_completion_tokens", bad}}).dump(),
                   "max_completion_tokens");
  }
  // Integers, however written or large, pass (the daemon clamps to its limit).
  for (const Json& good : {Json(12), Json(12.0), Json(1e20), Json(nullptr)}) {
    expect_passed(gw, request_with({{"max_tokens", good}}).dump());
  }
}

TEST(GatewayProtocol, UnimplementedParametersAreRefusedByName) {
  GatewayProcess gw;
  ASSERT_TRUE(gw.ready());
  const Json tool = {{"type", "function"},
                     {"function", {{"name", "f"}, {"parameters", Json::object()}}}};
  expect_refused(gw, request_with({{"tools", {tool}}}).dump(), "tools");
  expect_refused(gw, request_with({{"tool_choice", "required"}}).dump(), "tool_choice");
  expect_refused(gw, request_with({{"response_format", {{"type", "json_object"}}}}).dump(),
                 "response_format");
  expect_refused(gw, request_with({{"logprobs", true}}).dump(), "logprobs");
  expect_refused(gw, request_with({{"top_logprobs", 3}}).dump(), "top_logprobs");
  expect_refused(gw, request_with({{"n", 2}}).dump(), "n");
  expect_refused(gw, request_with({{"n", 1.5}}).dump(), "n");
  expect_refused(gw, request_with({{"stop", {"a", "b", "c", "d", "e"}}}).dump(), "stop");
  expect_refused(gw, request_with({{"stop", 7}}).dump(), "stop");
  expect_refused(gw, request_with({{"stop", {"a", 7}}}).dump(), "stop");
  expect_refused(gw, request_with({{"stop", ""}}).dump(), "stop");
  // Their harmless values pass.
  expect_passed(gw, request_with({{"tools", Json::array()},
                                  {"tool_choice", "none"},
                                  {"response_format", {{"type", "text"}}},
                                  {"logprobs", false},
                                  {"n", 1},
                                  {"stop", {"\n\n", "END"}}})
                        .dump());
  expect_passed(gw, request_with({{"stop", "\n"}}).dump());
}

TEST(GatewayProtocol, AStreamThatCannotStartGetsItsStatusNotA200) {
  GatewayProcess gw;
  ASSERT_TRUE(gw.ready());
  httplib::Client c = gw.client();
  // The daemon is down: 503 before any byte of a stream.
  auto r =
      c.Post("/v1/chat/completions", request_with({{"stream", true}}).dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(Json::parse(r->body)["error"]["code"], "unavailable");
  // A bad request: 400, stream or not.
  r = c.Post("/v1/chat/completions", request_with({{"stream", true}, {"max_tokens", -3}}).dump(),
             "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
}

TEST(GatewayProtocol, ModelsRetrieveByIdAndUnknownIdsAre404) {
  GatewayProcess gw;
  ASSERT_TRUE(gw.ready());
  httplib::Client c = gw.client();
  for (const char* id : {"vitrine", "vitrine-describe", "vitrine-qa", "base"}) {
    const auto r = c.Get(fmt::format("/v1/models/{}", id));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << id << ": " << r->body;
    const Json model = Json::parse(r->body);
    EXPECT_EQ(model["id"], id);
    EXPECT_EQ(model["object"], "model");
    EXPECT_EQ(model["owned_by"], "vitrine");
  }
  const auto r = c.Get("/v1/models/gpt-4");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(Json::parse(r->body)["error"]["code"], "model_not_found");
}

TEST(GatewayProtocol, CorsPreflightsAllowTheHeadersTheOpenAISdkSends) {
  GatewayProcess gw(Json{{"cors_origins", {"https://chat.example"}}});
  ASSERT_TRUE(gw.ready());
  httplib::Client c = gw.client();
  const std::string requested =
      "authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,"
      "x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,"
      "x-stainless-runtime-version,x-stainless-timeout,openai-organization";
  auto r = c.Options("/v1/chat/completions", {{"Origin", "https://chat.example"},
                                              {"Access-Control-Request-Method", "POST"},
                                              {"Access-Control-Request-Headers", requested}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204);
  EXPECT_EQ(r->get_header_value("Access-Control-Allow-Origin"), "https://chat.example");
  const std::string allowed = r->get_header_value("Access-Control-Allow-Headers");
  for (const char* header : {"authorization", "content-type", "x-stainless-os",
                             "x-stainless-retry-count", "x-stainless-timeout"}) {
    EXPECT_NE(allowed.find(header), std::string::npos) << header << " not in " << allowed;
  }
  EXPECT_NE(r->get_header_value("Access-Control-Allow-Methods").find("POST"), std::string::npos);
  // Another origin gets nothing of it.
  r = c.Options("/v1/chat/completions", {{"Origin", "https://evil.example"},
                                         {"Access-Control-Request-Method", "POST"},
                                         {"Access-Control-Request-Headers", requested}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(r->get_header_value("Access-Control-Allow-Headers"), "");
}

TEST(GatewayProtocol, Http10ClientsGetNoChunkedEncoding) {
  GatewayProcess gw;
  ASSERT_TRUE(gw.ready());
  RawConnection c(gw.address());
  ASSERT_TRUE(c.send(fmt::format("GET /v1/models HTTP/1.0\r\nHost: {}\r\n\r\n", gw.host())));
  EXPECT_TRUE(c.read_until_closed(5s)) << "an HTTP/1.0 connection was kept open";
  EXPECT_EQ(c.status(), 200) << c.received();
  EXPECT_EQ(c.head().find("Transfer-Encoding"), std::string::npos) << c.head();
  EXPECT_EQ(Json::parse(c.body())["object"], "list");
  // A client that closes its side after the request still gets the answer.
  RawConnection half(gw.address());
  ASSERT_TRUE(half.send(fmt::format("GET /v1/models HTTP/1.0\r\nHost: {}\r\n\r\n", gw.host())));
  half.close_write();
  EXPECT_TRUE(half.read_until_closed(5s));
  EXPECT_EQ(half.status(), 200) << half.received();
}

TEST(GatewayProtocol, VersionUsageErrorsAndFailuresHaveTheirExitCodes) {
  testing::expect_version_line("gateway/vitrine-gateway", "vitrine-gateway");
  testing::expect_exit_codes(
      "gateway/vitrine-gateway",
      {{"--no-such-flag", 2},
       {"--listen", 2},
       {"extra-argument", 2},
       {"--help", 0},
       // Failures: a config that cannot be read, an address that cannot be bound.
       {"--config /nonexistent/gateway.yaml", 1},
       {"--listen 203.0.113.1:1", 1}});
}

}  // namespace
}  // namespace vitrine
