// vitrine-gateway end to end with a real vitrined (tests/gateway/gateway_fixture.h):
// what needs a daemon answering — stop sequences cutting whole and streamed
// answers, a stream the daemon refuses getting its HTTP status instead of
// 200, HTTP/1.0 streams without chunked encoding, and parameters reaching
// the daemon as meant.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>

#include "tests/gateway/gateway_fixture.h"
#include "tests/gateway/raw_http.h"

namespace vitrine {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

// The text of a streamed answer, its finish_reason and whether it ended
// with [DONE]; `usage` gets the usage chunk's "usage" when one came.
struct Streamed {
  std::string text, finish_reason;
  bool done = false;
  Json usage;
  bool has_usage_chunk = false;
};

Streamed read_stream(const std::vector<std::string>& data) {
  Streamed s;
  for (const std::string& d : data) {
    if (d == "[DONE]") {
      s.done = true;
      continue;
    }
    const Json chunk = Json::parse(d);
    if (chunk["choices"].empty()) {
      s.has_usage_chunk = true;
      s.usage = chunk["usage"];
      continue;
    }
    const Json& delta = chunk["choices"][0]["delta"];
    if (delta.contains("content")) s.text += delta["content"].get<std::string>();
    if (!chunk["choices"][0]["finish_reason"].is_null()) {
      s.finish_reason = chunk["choices"][0]["finish_reason"];
    }
  }
  return s;
}

TEST_F(Gateway, AStreamTheDaemonRefusesGetsItsHttpStatusNotA200) {
  httplib::Client c = client();
  Json request = chat("vitrine", "Dune", 4, true);
  request["user"] = std::string(300, 'u');  // the daemon's limit is 256 bytes
  const auto r = c.Post("/v1/chat/completions", request.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  const Json error = Json::parse(r->body)["error"];
  EXPECT_NE(error["message"].get<std::string>().find("user_id"), std::string::npos) << error;
}

TEST_F(Gateway, StopSequencesCutTheAnswerWholeAndStreamedAndEndTheGeneration) {
  httplib::Client c = client();
  const std::string title = first_title();
  const auto whole = c.Post("/v1/chat/completions", chat("vitrine-describe", title, 80).dump(),
                            "application/json");
  ASSERT_TRUE(whole);
  ASSERT_EQ(whole->status, 200) << whole->body;
  const std::string text = Json::parse(whole->body)["choices"][0]["message"]["content"];
  ASSERT_GE(text.size(), 24u) << text;
  // A stop sequence from the answer's second third: the answer ends before
  // its first occurrence.
  const std::string stop = text.substr(text.size() / 3, 3);
  const std::string expected = text.substr(0, text.find(stop));

  Json request = chat("vitrine-describe", title, 80);
  request["stop"] = {"never in this answer \x01", stop};
  auto r = c.Post("/v1/chat/completions", request.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const Json j = Json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["message"]["content"], expected) << "stop: " << Json(stop);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");

  const int cancelled_before = cancelled_streams("describe");
  request["stream"] = true;
  request["stream_options"] = {{"include_usage", true}};
  r = c.Post("/v1/chat/completions", request.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const Streamed s = read_stream(events(r->body));
  EXPECT_EQ(s.text, expected) << "stop: " << Json(stop);
  EXPECT_EQ(s.finish_reason, "stop");
  EXPECT_TRUE(s.done);
  EXPECT_TRUE(s.has_usage_chunk);
  // The daemon's stream was cancelled once the stop sequence was seen.
  int cancelled = cancelled_before;
  for (int i = 0; i < 100 && cancelled == cancelled_before; ++i) {
    std::this_thread::sleep_for(50ms);
    cancelled = cancelled_streams("describe");
  }
  EXPECT_EQ(cancelled, cancelled_before + 1);

  // A stop sequence that never comes changes nothing.
  request = chat("vitrine-describe", title, 80, true);
  request["stop"] = "never in this answer \x01";
  r = c.Post("/v1/chat/completions", request.dump(), "application/json");
  ASSERT_TRUE(r);
  const Streamed all = read_stream(events(r->body));
  EXPECT_EQ(all.text, text);
  EXPECT_EQ(all.finish_reason, "length");
}

TEST_F(Gateway, Http10ClientsGetTheStreamCloseDelimited) {
  const std::string body =
      chat("vitrine-qa", "What is " + first_title() + " about?", 12, true).dump();
  testing::RawConnection c(address_);
  ASSERT_TRUE(c.send(fmt::format(
      "POST /v1/chat/completions HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer client-token\r\n"
      "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
      address_, body.size(), body)));
  EXPECT_TRUE(c.read_until_closed(60s)) << "the stream did not end with the connection";
  EXPECT_EQ(c.status(), 200) << c.received();
  EXPECT_EQ(c.head().find("chunked"), std::string::npos) << c.head();
  EXPECT_NE(c.head().find("text/event-stream"), std::string::npos) << c.head();
  const Streamed s = read_stream(events(c.body()));
  EXPECT_TRUE(s.done) << c.body();
  EXPECT_EQ(s.finish_reason, "length");
  EXPECT_FALSE(s.text.empty());
}

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
  // Past int32: clamped to its largest value, which the daemon takes as
  // "up to its limit"; never wrapped around to a negative number.
  request["max_tokens"] = 1e20;
  r = c.Post("/v1/chat/completions", request.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  j = Json::parse(r->body);
  EXPECT_GE(j["usage"]["completion_tokens"].get<int>(), 1);
}

}  // namespace
}  // namespace vitrine
