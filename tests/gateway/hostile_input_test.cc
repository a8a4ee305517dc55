// vitrine-gateway against hostile and sloppy clients, on loopback with no
// daemon behind it: request targets that are not UTF-8.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "tests/gateway/gateway_process.h"
#include "tests/gateway/raw_http.h"

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

}  // namespace
}  // namespace vitrine
