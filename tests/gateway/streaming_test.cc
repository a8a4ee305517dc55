// vitrine-gateway end to end with a real vitrined (tests/gateway/gateway_fixture.h):
// what needs a daemon answering — parameters reaching the daemon as meant.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>

#include "tests/gateway/gateway_fixture.h"

namespace vitrine {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

TEST_F(Gateway, NullsAndIntegralMaxTokensReachTheDaemonAsMeant) {
  httplib::Client c = client();
  Json request = chat("vitrine", first_title(), 3);
  request["stream"] = nullptr;  // not given: a whole answer
  request["max_tokens"] = 3.0;
  auto r = c.Post("/v1/chat/completions", request.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  Json j = Json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  // Past int32: clamped to its largest value, which the daemon clamps or
  // refuses by its own limit; never wrapped around to a negative number.
  request["max_tokens"] = 1e20;
  r = c.Post("/v1/chat/completions", request.dump(), "application/json");
  ASSERT_TRUE(r);
  if (r->status != 200) {
    EXPECT_EQ(r->status, 400) << r->body;
    const std::string message = Json::parse(r->body)["error"]["message"];
    EXPECT_NE(message.find("2147483647"), std::string::npos) << message;
    EXPECT_EQ(message.find("-2147483648"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace vitrine
