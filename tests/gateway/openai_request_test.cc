// gateway/openai_request.h, gateway/access_policy.h and gateway/http_head.h
// without a server: what a request body becomes for the daemon, which
// Hosts and Origins pass, and how the front reads a request head.
#include "gateway/openai_request.h"

#include <gtest/gtest.h>

#include <climits>
#include <nlohmann/json.hpp>

#include "gateway/access_policy.h"
#include "gateway/http_head.h"
#include "gateway/openai_error.h"

namespace vitrine::gateway {
namespace {

using Json = nlohmann::json;

Json request_with(const Json& changes) {
  Json j = {{"model", "vitrine-qa"},
            {"messages",
             {{{"role", "system"}, {"content", "be brief"}},
              {{"role", "user"}, {"content", "first"}},
              {{"role", "assistant"}, {"content", nullptr}},
              {{"role", "user"},
               {"content",
                {{{"type", "text"}, {"text", "What is"}},
                 {{"type", "text"}, {"text", "Dune about?"}}}}}}}};
  j.update(changes);
  return j;
}

// The param a refused body names.
std::string refused_param(const Json& body) {
  try {
    parse_chat_request(body.dump());
  } catch (const HttpError& e) {
    return e.param;
  }
  return "(accepted)";
}

TEST(GatewayRequestParsing, TheLastUserMessageAndSettingsReachTheDaemon) {
  const ChatCall call =
      parse_chat_request(request_with({{"max_tokens", 12.0},
                                       {"temperature", 0.5},
                                       {"top_p", 0.9},
                                       {"seed", -1},
                                       {"user", "u1"},
                                       {"stream", true},
                                       {"stream_options", {{"include_usage", true}}},
                                       {"stop", {"\n", "END"}}})
                             .dump());
  EXPECT_EQ(call.model, "vitrine-qa");
  EXPECT_EQ(call.request.route(), v1::ROUTE_QA);
  EXPECT_EQ(call.request.text(), "What is\nDune about?");
  EXPECT_EQ(call.request.generation().max_new_tokens(), 12);
  EXPECT_DOUBLE_EQ(call.request.generation().temperature(), 0.5);
  EXPECT_DOUBLE_EQ(call.request.generation().top_p(), 0.9);
  EXPECT_EQ(call.request.generation().seed(), UINT64_MAX);  // -1 keeps its 64 bits
  EXPECT_EQ(call.request.user_id(), "u1");
  EXPECT_TRUE(call.stream);
  EXPECT_TRUE(call.include_usage);
  EXPECT_EQ(call.stop, (std::vector<std::string>{"\n", "END"}));
}

TEST(GatewayRequestParsing, EarlierMessagesBecomeTheHistoryAtTheirIndices) {
  const ChatCall call = parse_chat_request(
      request_with({{"messages",
                     {{{"role", "developer"}, {"content", "Be brief."}},
                      {{"role", "user"}, {"content", "What is Dune about?"}},
                      {{"role", "assistant"}, {"content", {{{"type", "text"}, {"text", "Sand."}}}}},
                      {{"role", "system"}, {"content", "Answer in Portuguese."}},
                      {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", Json::array()}},
                      {{"role", "user"}, {"content", "e quem escreveu?"}}}}})
          .dump());
  EXPECT_EQ(call.request.text(), "e quem escreveu?");
  // messages[i] is history[i]: the daemon's errors name the client's index.
  const std::vector<std::pair<v1::Turn::Role, std::string>> expected = {
      {v1::Turn::ROLE_SYSTEM, "Be brief."},
      {v1::Turn::ROLE_USER, "What is Dune about?"},
      {v1::Turn::ROLE_ASSISTANT, "Sand."},
      {v1::Turn::ROLE_SYSTEM, "Answer in Portuguese."},
      {v1::Turn::ROLE_ASSISTANT, ""}};
  ASSERT_EQ(call.request.history_size(), static_cast<int>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(call.request.history(static_cast<int>(i)).role(), expected[i].first) << i;
    EXPECT_EQ(call.request.history(static_cast<int>(i)).text(), expected[i].second) << i;
  }
  // One user message: no history.
  EXPECT_EQ(parse_compare_request(Json({{"text", "Dune"}}).dump()).request.history_size(), 0);
}

TEST(GatewayRequestParsing, TheLastMessageMustBeTheUsersAndToolsAreRefused) {
  const Json user = {{"role", "user"}, {"content", "Dune"}};
  const Json answer = {{"role", "assistant"}, {"content", "A novel."}};
  EXPECT_EQ(refused_param(request_with({{"messages", {user, answer}}})), "messages[1]");
  EXPECT_EQ(refused_param(
                request_with({{"messages", {user, {{"role", "tool"}, {"content", "42"}}, user}}})),
            "messages[1].role");
  EXPECT_EQ(refused_param(request_with(
                {{"messages", {{{"role", "function"}, {"name", "f"}, {"content", "42"}}, user}}})),
            "messages[0].role");
  const Json calls = {{"role", "assistant"},
                      {"content", nullptr},
                      {"tool_calls", {{{"id", "c1"}, {"type", "function"}}}}};
  EXPECT_EQ(refused_param(request_with({{"messages", {user, calls, user}}})),
            "messages[1].tool_calls");
  EXPECT_EQ(refused_param(request_with({{"messages", {user, answer, {{"role", "user"}}}}})),
            "messages[2].content");  // nothing to answer
  EXPECT_EQ(refused_param(request_with({{"messages", {{{"content", "x"}}, user}}})),
            "messages[0].role");
}

TEST(GatewayRequestParsing, TheDaemonsHistoryErrorsNameTheClientsMessages) {
  const HttpError turn = error_of(
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "history[3].text: not valid UTF-8"));
  EXPECT_EQ(turn.status, 400);
  EXPECT_EQ(turn.message, "messages[3].content: not valid UTF-8");
  EXPECT_EQ(turn.param, "messages[3].content");
  const HttpError role = error_of(
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "history[0].role: 0 is not ROLE_SYSTEM"));
  EXPECT_EQ(role.param, "messages[0].role");
  const HttpError count = error_of(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                                "history: 40 turns, more than the limit of 32"));
  EXPECT_EQ(count.message, "messages: 40 turns, more than the limit of 32");
  EXPECT_EQ(count.param, "messages");
  // Other fields stay as the daemon names them.
  const HttpError text = error_of(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "text: empty"));
  EXPECT_EQ(text.message, "text: empty");
  EXPECT_EQ(text.param, "");
}

TEST(GatewayRequestParsing, MaxTokensPastInt32IsClampedNeverWrapped) {
  for (const Json& huge : {Json(1e20), Json(4294967296LL), Json(2147483648LL)}) {
    const ChatCall call = parse_chat_request(request_with({{"max_tokens", huge}}).dump());
    EXPECT_EQ(call.request.generation().max_new_tokens(), INT32_MAX) << huge;
  }
  // max_completion_tokens wins over max_tokens.
  const ChatCall call =
      parse_chat_request(request_with({{"max_tokens", 5}, {"max_completion_tokens", 7}}).dump());
  EXPECT_EQ(call.request.generation().max_new_tokens(), 7);
  EXPECT_EQ(refused_param(request_with({{"max_tokens", 2.9}})), "max_tokens");
  EXPECT_EQ(refused_param(request_with({{"max_completion_tokens", -1}})), "max_completion_tokens");
  EXPECT_EQ(refused_param(request_with({{"max_tokens", "8"}})), "max_tokens");
}

TEST(GatewayRequestParsing, EveryMistypedParameterIsNamed) {
  EXPECT_EQ(refused_param(request_with({{"model", 123}})), "model");
  EXPECT_EQ(refused_param(request_with({{"stream", 1}})), "stream");
  EXPECT_EQ(refused_param(request_with({{"stream_options", {{"include_usage", 1}}}})),
            "stream_options.include_usage");
  EXPECT_EQ(refused_param(request_with({{"messages", {{{"role", "user"}, {"content", {5}}}}}})),
            "messages[0].content[0]");
  EXPECT_EQ(refused_param(request_with(
                {{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}})),
            "messages[0].content[0].type");
  EXPECT_EQ(refused_param(request_with({{"messages", {{{"role", "robot"}, {"content", "x"}}}}})),
            "messages[0].role");
  EXPECT_EQ(refused_param(request_with({{"messages", {{{"role", "system"}, {"content", "x"}}}}})),
            "messages[0]");  // the last message is not the user's
  EXPECT_EQ(refused_param(request_with({{"tool_choice", {{"type", "function"}}}})), "tool_choice");
  EXPECT_EQ(refused_param(request_with({{"presence_penalty", 0.5}})), "presence_penalty");
  EXPECT_EQ(refused_param(request_with({{"logit_bias", {{"42", 1}}}})), "logit_bias");
  EXPECT_EQ(refused_param(request_with({{"stop", Json::array({"a", "b", "c", "d", "e"})}})),
            "stop");
  EXPECT_EQ(refused_param(request_with({{"presence_penalty", 0}, {"logprobs", nullptr}})),
            "(accepted)");
  try {
    parse_chat_request(request_with({{"model", "gpt-4o"}}).dump());
    FAIL() << "an unknown model was accepted";
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status, 404);
    EXPECT_EQ(e.code, "model_not_found");
  }
}

TEST(GatewayRequestParsing, CompareAndFeedbackCheckTheirFields) {
  const ChatCall call =
      parse_compare_request(Json({{"text", "Dune"}, {"model", nullptr}, {"seed", 3}}).dump());
  EXPECT_EQ(call.model, "vitrine");
  EXPECT_EQ(call.request.text(), "Dune");
  EXPECT_EQ(call.request.generation().seed(), 3u);
  const v1::FeedbackRequest f =
      parse_feedback_request(Json({{"response_id", "r-1"}, {"rating", -1.0}}).dump());
  EXPECT_EQ(f.rating(), -1);
  EXPECT_THROW(parse_feedback_request(R"({"response_id": "r", "rating": 0})"), HttpError);
  EXPECT_THROW(parse_compare_request(R"({"text": ""})"), HttpError);
}

TEST(GatewayRequestParsing, NumbersPastDoubleAreA400NotA500) {
  // Found by the gateway_request fuzz target: nlohmann's parser throws
  // out_of_range (not parse_error) for them, which became a 500.
  for (const std::string body :
       {R"({"text": 1e400})", R"({"model": "vitrine", "messages": [], "max_tokens": -1e999})",
        R"({"response_id": "r", "rating": 1844674401e3099551616})"}) {
    for (auto parse : {+[](std::string_view b) { parse_chat_request(b); },
                       +[](std::string_view b) { parse_compare_request(b); },
                       +[](std::string_view b) { parse_feedback_request(b); }}) {
      try {
        parse(body);
        ADD_FAILURE() << "accepted: " << body;
      } catch (const HttpError& e) {
        EXPECT_EQ(e.status, 400) << body;
        EXPECT_EQ(e.code, "invalid_json") << body;
        EXPECT_NE(e.message.find("out of range"), std::string::npos) << e.message;
      }
    }
  }
}

TEST(GatewayAccessPolicy, HostsAndOriginsByTheAllowList) {
  GatewayConfig config;
  config.listen = "0.0.0.0:8080";
  const AccessPolicy defaults(config, {});
  EXPECT_TRUE(defaults.host_allowed("localhost:8080"));
  EXPECT_TRUE(defaults.host_allowed("[::1]:8080"));
  EXPECT_FALSE(defaults.host_allowed("0.0.0.0:8080"));
  EXPECT_FALSE(defaults.host_allowed("attacker.example:8080"));
  EXPECT_FALSE(defaults.host_allowed(""));
  EXPECT_FALSE(defaults.host_allowed("localhost:8080\r\nX: y"));
  EXPECT_TRUE(defaults.origin_allowed("http://localhost:8080", "127.0.0.1:8080"));
  EXPECT_FALSE(defaults.origin_allowed("http://attacker.example:8080", "127.0.0.1:8080"));
  EXPECT_FALSE(defaults.origin_allowed("null", "127.0.0.1:8080"));

  config.allowed_hosts = {"vitrine.example.com", "vitrine-gateway:8080"};
  config.cors_origins = {"https://chat.example"};
  const AccessPolicy listed(config, {"secret"});
  EXPECT_TRUE(listed.host_allowed("VITRINE.example.com"));
  EXPECT_TRUE(listed.host_allowed("vitrine.example.com:443"));
  EXPECT_TRUE(listed.host_allowed("vitrine-gateway:8080"));
  EXPECT_FALSE(listed.host_allowed("vitrine-gateway"));  // port 80
  EXPECT_FALSE(listed.host_allowed("localhost:8080"));
  EXPECT_TRUE(listed.origin_allowed("https://vitrine.example.com", "vitrine.example.com"));
  EXPECT_TRUE(listed.origin_allowed("https://chat.example", "vitrine.example.com"));
  EXPECT_FALSE(listed.origin_allowed("https://chat.example.evil", "vitrine.example.com"));
  EXPECT_TRUE(listed.authorized("Bearer secret"));
  EXPECT_FALSE(listed.authorized("Bearer secre"));
  EXPECT_FALSE(listed.authorized("Bearer secrets"));
  EXPECT_FALSE(listed.authorized("secret"));

  config.allowed_hosts = {"host with space"};
  EXPECT_THROW(AccessPolicy(config, {}), std::invalid_argument);
}

TEST(GatewayRequestHead, TheFrontReadsExtentVersionAndFraming) {
  EXPECT_FALSE(parse_request_head("GET / HTTP/1.1\r\nHost: x\r\n"));
  const auto probe = parse_request_head("GET /healthz?x=1 HTTP/1.0\r\nHost: x\r\n\r\nrest");
  ASSERT_TRUE(probe);
  EXPECT_EQ(probe->size, 38u);
  EXPECT_TRUE(probe->http10);
  EXPECT_TRUE(probe->is_health_probe());
  const auto post = parse_request_head(
      "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 12\r\nEXPECT: 100-Continue\r\n"
      "Connection: keep-alive, close\r\n\r\n");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->content_length, 12u);
  EXPECT_TRUE(post->expect_continue);
  EXPECT_TRUE(post->connection_close);
  EXPECT_FALSE(post->is_health_probe());
  const auto odd = parse_request_head("GET /healthz HTTP/1.1\r\nContent-Length: 1x\r\n\r\n");
  ASSERT_TRUE(odd);
  EXPECT_FALSE(odd->content_length);
  const auto chunked =
      parse_request_head("GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  ASSERT_TRUE(chunked);
  EXPECT_FALSE(chunked->is_health_probe());  // a body: httplib's to read
}

}  // namespace
}  // namespace vitrine::gateway
