// vitrine-gateway end to end: real HTTP on loopback to the gateway, which
// speaks gRPC to a real vitrined serving stories260K-hf with adapters and a
// classifier trained in the test.
#include "gateway/gateway.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/gateway/gateway_fixture.h"

namespace vitrine {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace std::chrono_literals;

TEST_F(Gateway, ModelsAndCompletionsHaveOpenAIsShapeWithRouteAndSources) {
  httplib::Client c = client();
  const auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  ASSERT_EQ(models->status, 200) << models->body;
  std::vector<std::string> ids;
  const Json listed = Json::parse(models->body);
  for (const Json& m : listed["data"]) ids.push_back(m["id"]);
  EXPECT_EQ(ids, (std::vector<std::string>{"vitrine", "vitrine-describe", "vitrine-qa", "base"}));

  const std::string title = first_title();
  const auto r =
      c.Post("/v1/chat/completions", chat("vitrine", title, 12).dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const Json j = Json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "vitrine");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_FALSE(j["choices"][0]["message"]["content"].get<std::string>().empty());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_EQ(j["usage"]["total_tokens"].get<int>(), j["usage"]["prompt_tokens"].get<int>() + 12);
  EXPECT_EQ(j["vitrine"]["route"]["agent"], "describe");
  EXPECT_EQ(j["vitrine"]["route"]["evidence"], "catalogue title");
  ASSERT_FALSE(j["vitrine"]["sources"].empty());
  EXPECT_EQ(j["vitrine"]["sources"][0]["title"], title);

  // Each model name is its route.
  for (const auto& [model, agent, adapter] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"vitrine-qa", "qa", "qa"},
           {"vitrine-describe", "describe", "describe"},
           {"base", "describe", ""}}) {
    const auto m = c.Post("/v1/chat/completions", chat(model, title, 4).dump(), "application/json");
    ASSERT_TRUE(m);
    ASSERT_EQ(m->status, 200) << model << ": " << m->body;
    const Json v = Json::parse(m->body)["vitrine"];
    EXPECT_EQ(v["route"]["agent"], agent) << model;
    EXPECT_EQ(v["route"]["adapter"], adapter) << model;
  }

  // The page's extras: feedback on an answer, and the side-by-side comparison.
  const Json feedback = {{"response_id", j["vitrine"]["response_id"]}, {"rating", 1}};
  const auto f = c.Post("/v1/feedback", feedback.dump(), "application/json");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 200) << f->body;
  const auto ab =
      c.Post("/v1/compare", Json{{"text", title}, {"max_tokens", 8}}.dump(), "application/json");
  ASSERT_TRUE(ab);
  ASSERT_EQ(ab->status, 200) << ab->body;
  const Json both = Json::parse(ab->body);
  EXPECT_EQ(both["base"]["vitrine"]["route"]["adapter"], "");
  EXPECT_EQ(both["tuned"]["vitrine"]["route"]["adapter"], "describe");
  EXPECT_EQ(both["tuned"]["text"], j["choices"][0]["message"]["content"].get<std::string>().substr(
                                       0, both["tuned"]["text"].get<std::string>().size()));
}

TEST_F(Gateway, AQuestionAboutNoProductIsAnsweredHonestlyWholeStreamedAndInPortuguese) {
  httplib::Client c = client();
  const std::string question = "What is the battery life of the zq-9000 hyperdrive?";
  const auto r =
      c.Post("/v1/chat/completions", chat("vitrine", question, 24).dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const Json j = Json::parse(r->body);
  const std::string content = j["choices"][0]["message"]["content"];
  EXPECT_EQ(content.rfind("I don't know that product: ", 0), 0u) << content;
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["completion_tokens"], 0);
  const Json& v = j["vitrine"];
  EXPECT_FALSE(v["product_found"]);
  EXPECT_TRUE(v["sources"].empty());
  EXPECT_EQ(v["route"]["agent"], "qa");
  EXPECT_EQ(v["route"]["adapter"], "");
  ASSERT_FALSE(v["closest"].empty()) << v.dump();
  EXPECT_LE(v["closest"].size(), 3u);
  for (const Json& title : v["closest"]) {
    EXPECT_NE(content.find("\"" + title["title"].get<std::string>() + "\""), std::string::npos)
        << title.dump();
    EXPECT_LT(title["score"].get<double>(), 0.6);
  }

  // Streamed: the same text in one chunk (after the one opening the
  // assistant's turn, empty), and the same titles.
  const auto s = c.Post("/v1/chat/completions", chat("vitrine", question, 24, true).dump(),
                        "application/json");
  ASSERT_TRUE(s);
  ASSERT_EQ(s->status, 200) << s->body;
  std::vector<std::string> pieces;
  Json last;
  for (const std::string& data : events(s->body)) {
    if (data == "[DONE]") continue;
    const Json chunk = Json::parse(data);
    const Json& delta = chunk["choices"][0]["delta"];
    if (delta.contains("content") && delta["content"] != "") pieces.push_back(delta["content"]);
    if (chunk.contains("vitrine")) last = chunk;
  }
  EXPECT_EQ(pieces, std::vector<std::string>{content});
  ASSERT_FALSE(last.is_null()) << s->body;
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  EXPECT_FALSE(last["vitrine"]["product_found"]);
  EXPECT_EQ(last["vitrine"]["closest"], v["closest"]);

  // In Portuguese, after earlier messages that name no product: said in Portuguese.
  const Json portuguese = {
      {"model", "vitrine"},
      {"messages",
       {{{"role", "user"}, {"content", "Olá"}},
        {{"role", "assistant"}, {"content", "Olá! Pergunte-me sobre um produto."}},
        {{"role", "user"}, {"content", "Qual é a duração da bateria do zq-9000 hyperdrive?"}}}},
      {"max_tokens", 24}};
  const auto pt = c.Post("/v1/chat/completions", portuguese.dump(), "application/json");
  ASSERT_TRUE(pt);
  ASSERT_EQ(pt->status, 200) << pt->body;
  const Json p = Json::parse(pt->body);
  EXPECT_EQ(p["choices"][0]["message"]["content"].get<std::string>().rfind(
                "Não conheço esse produto: ", 0),
            0u)
      << pt->body;
  EXPECT_FALSE(p["vitrine"]["product_found"]);

  // A follow-up in the OpenAI messages, after a product the catalogue has:
  // about that product, answered by the model.
  const std::string title = first_title();
  const Json follow_up = {{"model", "vitrine-qa"},
                          {"messages",
                           {{{"role", "user"}, {"content", title}},
                            {{"role", "assistant"}, {"content", "A fine product."}},
                            {{"role", "user"}, {"content", "and who wrote it?"}}}},
                          {"max_tokens", 4}};
  const auto f = c.Post("/v1/chat/completions", follow_up.dump(), "application/json");
  ASSERT_TRUE(f);
  ASSERT_EQ(f->status, 200) << f->body;
  const Json fv = Json::parse(f->body)["vitrine"];
  EXPECT_TRUE(fv["product_found"]);
  ASSERT_FALSE(fv["sources"].empty()) << fv.dump();
  EXPECT_EQ(fv["sources"][0]["title"], title);
  EXPECT_EQ(fv["sources"][0]["message_index"], 0);
  EXPECT_TRUE(fv["closest"].empty());
  EXPECT_GT(Json::parse(f->body)["usage"]["completion_tokens"].get<int>(), 0);
}

TEST_F(Gateway, AFollowUpIsAboutTheProductOfAnEarlierMessageAndItsSourcesSaySo) {
  httplib::Client c = client();
  const std::string title = first_title();
  const Json conversation = {{"model", "vitrine-qa"},
                             {"messages",
                              {{{"role", "system"}, {"content", "Answer briefly."}},
                               {{"role", "user"}, {"content", title}},
                               {{"role", "assistant"}, {"content", "A fine product."}},
                               {{"role", "user"}, {"content", "e quem escreveu?"}}}},
                             {"max_tokens", 4}};
  const auto r = c.Post("/v1/chat/completions", conversation.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const Json v = Json::parse(r->body)["vitrine"];
  EXPECT_EQ(v["route"]["agent"], "qa");
  EXPECT_TRUE(v["product_found"]);
  ASSERT_FALSE(v["sources"].empty()) << v.dump();
  EXPECT_EQ(v["sources"][0]["title"], title);
  EXPECT_EQ(v["sources"][0]["evidence"], "earlier turn");
  EXPECT_EQ(v["sources"][0]["message_index"], 1);  // messages[1] named it
  EXPECT_EQ(v["history"]["turns_used"], 2);
  EXPECT_EQ(v["history"]["turns_dropped"], 0);
  // The question alone names no product.
  const auto alone = c.Post("/v1/chat/completions",
                            chat("vitrine-qa", "e quem escreveu?", 4).dump(), "application/json");
  ASSERT_TRUE(alone);
  EXPECT_FALSE(Json::parse(alone->body)["vitrine"]["product_found"]) << alone->body;

  // The daemon's limit on turns comes back naming the client's messages.
  Json chatty = chat("vitrine-qa", "and then?", 4);
  for (int i = 0; i < 33; ++i) {
    const Json turn = {{"role", i % 2 ? "user" : "assistant"}, {"content", "ok"}};
    chatty["messages"].insert(chatty["messages"].begin(), turn);
  }
  const auto over = c.Post("/v1/chat/completions", chatty.dump(), "application/json");
  ASSERT_TRUE(over);
  EXPECT_EQ(over->status, 400) << over->body;
  EXPECT_EQ(Json::parse(over->body)["error"]["param"], "messages") << over->body;
  // A tool result is refused before the daemon is asked.
  Json tool = conversation;
  tool["messages"][2] = {{"role", "tool"}, {"content", "42"}};
  const auto refused = c.Post("/v1/chat/completions", tool.dump(), "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);
  EXPECT_EQ(Json::parse(refused->body)["error"]["param"], "messages[2].role");
}

TEST_F(Gateway, StreamingSendsChunksUsageAndDoneAndEqualsTheWholeAnswer) {
  httplib::Client c = client();
  const std::string question = "What is " + first_title() + " about?";
  const auto whole =
      c.Post("/v1/chat/completions", chat("vitrine-qa", question, 20).dump(), "application/json");
  ASSERT_TRUE(whole);
  ASSERT_EQ(whole->status, 200) << whole->body;
  Json request = chat("vitrine-qa", question, 20, true);
  request["stream_options"] = {{"include_usage", true}};
  const auto r = c.Post("/v1/chat/completions", request.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  const std::vector<std::string> data = events(r->body);
  ASSERT_GE(data.size(), 5u) << r->body;
  EXPECT_EQ(data.back(), "[DONE]");
  const Json first = Json::parse(data.front());
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  Json last, usage;
  for (size_t i = 0; i + 1 < data.size(); ++i) {
    const Json chunk = Json::parse(data[i]);
    EXPECT_EQ(chunk["id"], first["id"]);
    if (chunk["choices"].empty()) {
      usage = chunk["usage"];
      continue;
    }
    const Json& delta = chunk["choices"][0]["delta"];
    if (delta.contains("content")) text += delta["content"].get<std::string>();
    if (!chunk["choices"][0]["finish_reason"].is_null()) last = chunk;
  }
  EXPECT_EQ(text, Json::parse(whole->body)["choices"][0]["message"]["content"]);
  ASSERT_TRUE(last.is_object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(last["vitrine"]["route"]["agent"], "qa");
  EXPECT_EQ(usage["completion_tokens"], 20);
}

TEST_F(Gateway, BadRequestsGetOpenAIErrorsWithTheirHttpCodes) {
  auto error_of = [](const httplib::Result& r) {
    return r ? Json::parse(r->body)["error"] : Json();
  };
  httplib::Client anonymous = client(false);
  auto r =
      anonymous.Post("/v1/chat/completions", chat("vitrine", "Dune", 2).dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(error_of(r)["code"], "invalid_api_key");
  httplib::Client wrong("http://" + address_);
  wrong.set_bearer_token_auth("nope");
  EXPECT_EQ(wrong.Get("/v1/models")->status, 401);

  httplib::Client c = client();
  r = c.Post("/v1/chat/completions", "{\"model\": \"vitrine\", ", "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(error_of(r)["code"], "invalid_json");
  EXPECT_EQ(error_of(r)["type"], "invalid_request_error");
  r = c.Post("/v1/chat/completions", chat("gpt-4", "Dune", 2).dump(), "application/json");
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(error_of(r)["code"], "model_not_found");
  r = c.Post("/v1/chat/completions", Json{{"model", "vitrine"}}.dump(), "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(error_of(r)["message"].get<std::string>().find("messages"), std::string::npos);
  r = c.Post("/v1/chat/completions", chat("vitrine", std::string(5000, 'a'), 2).dump(),
             "application/json");
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(error_of(r)["code"], "request_too_large");
  r = c.Post("/v1/chat/completions", chat("vitrine", "", 2).dump(), "application/json");
  EXPECT_EQ(r->status, 400);
  // The daemon's refusals come back as OpenAI errors too.
  Json long_user = chat("vitrine", "Dune", 2);
  long_user["user"] = std::string(300, 'u');
  r = c.Post("/v1/chat/completions", long_user.dump(), "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(error_of(r)["message"].get<std::string>().find("user_id"), std::string::npos);
  // More tokens than the daemon's limit, as chat clients ask: up to it.
  r = c.Post("/v1/chat/completions", chat("vitrine", "Dune", 100000).dump(), "application/json");
  EXPECT_EQ(r->status, 200) << r->body;
  r = c.Post("/v1/feedback", Json{{"response_id", "r-nope"}, {"rating", 1}}.dump(),
             "application/json");
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(c.Get("/v1/nothing")->status, 404);

  // CORS: the configured origin is allowed (preflight too), others refused.
  httplib::Headers allowed = {{"Origin", "https://chat.example"}};
  r = c.Get("/v1/models", allowed);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Access-Control-Allow-Origin"), "https://chat.example");
  r = c.Options("/v1/chat/completions", allowed);
  EXPECT_EQ(r->status, 204);
  r = c.Get("/v1/models", {{"Origin", "https://evil.example"}});
  EXPECT_EQ(r->status, 403);
  // Probes and the page need no token.
  EXPECT_EQ(anonymous.Get("/healthz")->status, 200);
  EXPECT_EQ(anonymous.Get("/readyz")->status, 200);
  const auto page = anonymous.Get("/");
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<html"), std::string::npos);
}

TEST_F(Gateway, AClientThatLeavesMidStreamCancelsItsRequestAtTheDaemon) {
  // A long sampled answer, read until its first piece, then the socket
  // closes. About a catalogue product: one about none is answered at once.
  Json request = chat("vitrine-qa", "Tell me about " + first_title(), 400, true);
  request["temperature"] = 1.0;
  const std::string body = request.dump();
  const std::string http = fmt::format(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer client-token\r\n"
      "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
      address_, body.size(), body);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address_.substr(address_.rfind(':') + 1))));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(send(fd, http.data(), http.size(), 0), static_cast<ssize_t>(http.size()));
  std::string received;
  char buf[4096];
  // Until a chunk with text (the first one only opens the assistant's turn).
  auto has_text = [&] {
    for (size_t at = received.find("\"content\":\""); at != std::string::npos;
         at = received.find("\"content\":\"", at + 1)) {
      if (at + 11 < received.size() && received[at + 11] != '"') return true;
    }
    return false;
  };
  while (!has_text()) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0) << received;
    received.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  // The daemon records the stream as cancelled, long before 400 tokens.
  httplib::Client metrics("http://" + metrics_);
  std::string text;
  for (int i = 0; i < 200; ++i) {
    if (const auto r = metrics.Get("/metrics")) text = r->body;
    if (text.find("method=\"AskStream\",route=\"qa\",arm=\"\",code=\"CANCELLED\"") !=
        std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(text.find("method=\"AskStream\",route=\"qa\",arm=\"\",code=\"CANCELLED\""),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("vitrine_batch_size 0"), std::string::npos);
}

TEST_F(Gateway, TheWebPageStreamsAnAnswerWithItsRouteAndSourcesInChromium) {
  // tests/gateway/web_page_test.mjs in headless Chromium against this gateway:
  // it types a question, waits for the streamed answer, checks the route
  // badge and the sources, sends a thumbs-up, asks about no product (the
  // closest titles) and runs an A/B comparison.
  const fs::path script = fs::path(VITRINE_SOURCE_DIR) / "tests" / "gateway" / "web_page_test.mjs";
  const fs::path shots = fs::path(VITRINE_BINARY_DIR) / "web-page";
  fs::create_directories(shots);
  const std::string cmd = fmt::format(
      "node {} --gateway http://{} --token client-token --screenshot {} --ab-screenshot {} "
      "--unknown-screenshot {} --timeout 180 2>&1",
      script.string(), address_, (shots / "web-page.png").string(), (shots / "web-ab.png").string(),
      (shots / "web-unknown.png").string());
  std::string output;
  FILE* pipe = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
  const int status = pclose(pipe);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 77) GTEST_SKIP() << output;
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(fs::exists(shots / "web-page.png"));
  EXPECT_TRUE(fs::exists(shots / "web-ab.png"));
  EXPECT_TRUE(fs::exists(shots / "web-unknown.png"));
}

TEST(GatewayConfig, ShippedConfigHoldsExactlyTheDefaults) {
  const testing::CliRun r = testing::run_program(
      "gateway/vitrine-gateway",
      fmt::format("--config {}/configs/gateway.yaml --print-config", VITRINE_SOURCE_DIR));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::ordered_json::parse(r.output),
            gateway::gateway_config_to_json(gateway::GatewayConfig{}))
      << "configs/gateway.yaml and the defaults in the code disagree";
  testing::TempDir dir;
  testing::write_file(dir / "typo.yaml", "max_body: 3\n");
  const testing::CliRun typo =
      testing::run_program("gateway/vitrine-gateway",
                           fmt::format("--print-config --config {}", (dir / "typo.yaml").string()));
  EXPECT_EQ(typo.exit_code, 1);
  EXPECT_NE(typo.output.find("unknown config key 'gateway.max_body'"), std::string::npos)
      << typo.output;
}

}  // namespace
}  // namespace vitrine
