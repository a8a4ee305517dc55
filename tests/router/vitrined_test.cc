// vitrined end to end: the real daemon as a child process on loopback,
// serving stories260K-hf with describe and qa adapters and a classifier
// trained in this test from ../shared's sample, asked over gRPC.
#include <fmt/format.h>
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "router/router_config.h"
#include "tests/support/ports.h"
#include "tests/support/program_exit.h"
#include "tests/support/reflection.h"
#include "tests/support/run_vitrine.h"
#include "tests/support/serving.h"
#include "tests/support/temp_dir.h"
#include "vitrine/v1/chat.grpc.pb.h"

namespace vitrine {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using testing::copy_adapter;
using testing::Daemon;
using testing::health;
using testing::run_vitrine;
using namespace std::chrono_literals;

struct Labelled {
  std::string text;
  std::string route;  // describe or qa
  std::string uid;    // the product it is about
};

std::vector<Json> read_jsonl(const fs::path& path, size_t limit) {
  std::ifstream in(path);
  std::vector<Json> out;
  std::string line;
  while (out.size() < limit && std::getline(in, line)) out.push_back(Json::parse(line));
  return out;
}

class Vitrined : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto inputs = testing::sample_and_model();
    if (!inputs) return;
    dir_ = new testing::TempDir();
    ASSERT_TRUE(testing::prepare_and_train(inputs->sample, inputs->model, dir_->path()));
    model_ = inputs->model;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (dir_ == nullptr) GTEST_SKIP() << "../shared data or models not found";
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    work_ = dir_->path() / name;
    fs::create_directories(work_);
    fs::copy(dir_->path() / "published", work_ / "adapters", fs::copy_options::recursive);
    address_ = fmt::format("127.0.0.1:{}", testing::free_port());
    metrics_address_ = fmt::format("127.0.0.1:{}", testing::free_port());
  }

  // The daemon's config for this test: `overrides` merged into the defaults.
  fs::path write_config(const Json& overrides = Json::object()) {
    Json c = {{"listen", address_},
              {"model", model_.string()},
              {"adapters_dir", (work_ / "adapters").string()},
              {"classifier", (dir_->path() / "run" / "classifier").string()},
              {"catalog", (dir_->path() / "ds" / "catalog.sqlite").string()},
              {"response_log", (work_ / "responses.sqlite").string()},
              {"threads", 1},
              {"reload_seconds", 0},
              {"drain_seconds", 20},
              {"metrics_listen", metrics_address_},
              {"engine", {{"max_batch", 4}, {"max_queue", 16}, {"default_new_tokens", 24}}}};
    c.merge_patch(overrides);
    const fs::path path = work_ / "router.yaml";
    testing::write_file(path, c.dump(2));  // JSON is YAML
    return path;
  }

  std::unique_ptr<Daemon> start(
      const Json& overrides = Json::object(),
      std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials()) {
    auto daemon = std::make_unique<Daemon>(write_config(overrides), credentials, address_);
    EXPECT_TRUE(daemon->wait_serving()) << "vitrined did not start serving";
    return daemon;
  }

  std::string metrics() {
    httplib::Client client("http://" + metrics_address_);
    const auto r = client.Get("/metrics");
    return r && r->status == 200 ? r->body : "";
  }

  static inline testing::TempDir* dir_ = nullptr;
  static inline fs::path model_;
  fs::path work_;
  std::string address_, metrics_address_;
};

v1::AskRequest ask_request(const std::string& text, int max_new_tokens = 0,
                           v1::Route route = v1::ROUTE_AUTO) {
  v1::AskRequest request;
  request.set_text(text);
  request.set_route(route);
  request.mutable_generation()->set_max_new_tokens(max_new_tokens);
  return request;
}

// A request that runs long: sampled (eos comes late, if at all) up to
// `tokens`, about a product of ../shared's sample (a question about none is
// answered at once, without the model).
v1::AskRequest long_request(int tokens) {
  v1::AskRequest request = ask_request(
      "Tell me about Spirit Led-Moving By Grace In The Holy Spirit's Gifts", tokens, v1::ROUTE_QA);
  request.mutable_generation()->set_temperature(1.0);
  return request;
}

// `bytes` sent to ChatService/`method` as they are (a generic stub sends
// what a typed stub would refuse to): "CODE message" of the answer.
std::string raw_call(Daemon& daemon, const std::string& method, const std::string& bytes) {
  grpc::GenericStub stub(daemon.channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 30s);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  grpc::CompletionQueue cq;
  auto call = stub.PrepareUnaryCall(&context, "/vitrine.v1.ChatService/" + method, request, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  static const std::map<grpc::StatusCode, std::string> kCodes = {
      {grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT"},
      {grpc::StatusCode::UNAUTHENTICATED, "UNAUTHENTICATED"}};
  const auto known = kCodes.find(status.error_code());
  return fmt::format("{} {}",
                     known != kCodes.end() ? known->second : std::to_string(status.error_code()),
                     status.error_message());
}
std::string raw_call(Daemon& daemon, const std::string& method,
                     const google::protobuf::Message& message) {
  const google::protobuf::LogSilencer quiet;  // the invalid UTF-8 is meant
  return raw_call(daemon, method, message.SerializeAsString());
}

grpc::Status ask(Daemon& daemon, const v1::AskRequest& request, v1::AskResponse& response,
                 const std::string& token = "") {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 60s);
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  return daemon.stub().Ask(&context, request, &response);
}

TEST_F(Vitrined, RoutesTitlesAndQuestionsAndNamesTheirSources) {
  auto daemon = start();
  const fs::path tasks = dir_->path() / "ds" / "tasks";
  std::vector<Labelled> set;
  for (const Json& j : read_jsonl(tasks / "describe" / "test.jsonl", 24)) {
    set.push_back({j["prompt"], "describe", j["uid"]});
  }
  for (const Json& j : read_jsonl(tasks / "qa" / "test.jsonl", 24)) {
    set.push_back({j["question"], "qa", j["uid"]});
  }
  // Titles that read as questions: the catalogue knows them as titles.
  int title_questions = 0;
  for (const Json& j : read_jsonl(tasks / "describe" / "train.jsonl", 100000)) {
    const std::string title = j["prompt"];
    if (title.back() == '?' && title_questions < 8) {
      set.push_back({title, "describe", j["uid"]});
      ++title_questions;
    }
  }
  ASSERT_GE(title_questions, 1) << "the sample has no title ending with '?'";

  int right = 0, with_source = 0, questions = 0, questions_right = 0;
  for (const Labelled& item : set) {
    v1::AskResponse r;
    const grpc::Status s = ask(*daemon, ask_request(item.text, 2), r);
    ASSERT_TRUE(s.ok()) << item.text << ": " << s.error_message();
    const bool routed = r.route().agent() == item.route;
    right += routed;
    if (item.route == "qa") {
      ++questions;
      questions_right += routed;
    } else {
      // Every title is the catalogue's: described, and named as the source.
      EXPECT_EQ(r.route().agent(), "describe") << item.text;
      EXPECT_EQ(r.route().evidence(), "catalogue title") << item.text;
    }
    EXPECT_EQ(r.route().adapter(), r.route().agent());
    EXPECT_EQ(r.route().adapter_version(), 1);
    const bool found = std::any_of(r.sources().begin(), r.sources().end(),
                                   [&](const v1::Source& src) { return src.uid() == item.uid; });
    with_source += found;
    EXPECT_EQ(r.product_found(), !r.sources().empty());
    EXPECT_FALSE(r.response_id().empty());
    EXPECT_GT(r.usage().prompt_tokens(), 0);
    EXPECT_GT(r.timings().total_ms(), 0);
  }
  std::printf("routed %d/%zu right (questions %d/%d), source named for %d/%zu\n", right, set.size(),
              questions_right, questions, with_source, set.size());
  EXPECT_GE(questions_right, questions * 9 / 10);
  EXPECT_GE(with_source, static_cast<int>(set.size()) * 8 / 10);

  // A question about no product says so.
  v1::AskResponse unknown;
  ASSERT_TRUE(
      ask(*daemon, ask_request("What is the warranty of the zq-9000 hyperdrive?", 2), unknown)
          .ok());
  EXPECT_FALSE(unknown.product_found());
  EXPECT_TRUE(unknown.sources().empty());

  // Classify agrees with Ask's route.
  grpc::ClientContext context;
  v1::ClassifyRequest classify;
  classify.set_text(set.back().text);
  v1::ClassifyResponse decision;
  ASSERT_TRUE(daemon->stub().Classify(&context, classify, &decision).ok());
  EXPECT_EQ(decision.route(), v1::ROUTE_DESCRIBE);
  EXPECT_EQ(decision.matched().uid(), set.back().uid);
}

TEST_F(Vitrined, StreamingEqualsUnaryAndCompareAnswersWithBoth) {
  auto daemon = start();
  // A question about a product the catalogue has, so a model answers it.
  const std::string question =
      read_jsonl(dir_->path() / "ds" / "tasks" / "qa" / "test.jsonl", 1)[0]["question"];
  const v1::AskRequest request = ask_request(question, 24, v1::ROUTE_QA);
  v1::AskResponse unary;
  ASSERT_TRUE(ask(*daemon, request, unary).ok());

  grpc::ClientContext context;
  auto reader = daemon->stub().AskStream(&context, request);
  v1::AskStreamEvent event;
  std::string streamed;
  v1::AskResponse last;
  int pieces = 0;
  while (reader->Read(&event)) {
    if (event.has_answer()) {
      last = event.answer();
    } else {
      streamed += event.text();
      ++pieces;
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_GT(pieces, 1);
  EXPECT_EQ(streamed, unary.text());
  EXPECT_EQ(last.text(), unary.text());
  EXPECT_EQ(last.usage().completion_tokens(), unary.usage().completion_tokens());
  EXPECT_NE(last.response_id(), unary.response_id());

  grpc::ClientContext compare_context;
  v1::CompareResponse compared;
  ASSERT_TRUE(daemon->stub().Compare(&compare_context, request, &compared).ok());
  EXPECT_EQ(compared.base().route().adapter(), "");
  EXPECT_EQ(compared.tuned().route().adapter(), "qa");
  EXPECT_EQ(compared.tuned().route().adapter_version(), 1);
  EXPECT_EQ(compared.tuned().text(), unary.text());  // greedy: the same answer as Ask's
  v1::AskResponse base;
  ASSERT_TRUE(ask(*daemon, ask_request(question, 24, v1::ROUTE_BASE), base).ok());
  EXPECT_EQ(compared.base().text(), base.text());
  EXPECT_EQ(compared.base().sources_size(), compared.tuned().sources_size());
  EXPECT_GT(compared.base().timings().total_ms(), 0);
  EXPECT_GT(compared.tuned().timings().total_ms(), 0);
  // The routing decision is timed and reported with the answer; a forced
  // route takes none.
  EXPECT_EQ(unary.timings().route_ms(), 0);
  EXPECT_GT(base.timings().route_ms(), 0);
  EXPECT_LT(base.timings().route_ms(), 100);

  // Compare needs a tuned side.
  grpc::ClientContext base_context;
  EXPECT_EQ(daemon->stub()
                .Compare(&base_context, ask_request("Dune", 4, v1::ROUTE_BASE), &compared)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(metrics().find("method=\"Compare\",route=\"\",arm=\"\",code=\"INVALID_ARGUMENT\"} 1"),
            std::string::npos);

  // Responses are logged; feedback needs a logged id.
  grpc::ClientContext feedback_context;
  v1::FeedbackRequest feedback;
  feedback.set_response_id(unary.response_id());
  feedback.set_rating(1);
  v1::FeedbackResponse nothing;
  EXPECT_TRUE(daemon->stub().Feedback(&feedback_context, feedback, &nothing).ok());
  grpc::ClientContext unknown_context;
  feedback.set_response_id("r-nope");
  EXPECT_EQ(daemon->stub().Feedback(&unknown_context, feedback, &nothing).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Each call counts once, whatever its method: Compare's two answers are
  // one request, labelled by the tuned side.
  const std::string text = metrics();
  for (const std::string line :
       {"vitrine_requests_total{method=\"Compare\",route=\"qa\",arm=\"\",code=\"OK\"} 1",
        "vitrine_requests_total{method=\"Feedback\",route=\"\",arm=\"\",code=\"NOT_FOUND\"} 1",
        "vitrine_requests_total{method=\"Feedback\",route=\"\",arm=\"\",code=\"OK\"} 1",
        "vitrine_errors_total{code=\"NOT_FOUND\"} 1",
        "# TYPE vitrine_route_decision_seconds histogram"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
}

TEST_F(Vitrined, BadRequestsGetTheirStatusAndTheDaemonGoesOn) {
  auto daemon = start(
      {{"engine", {{"max_input_chars", 100}, {"max_new_tokens", 16}, {"default_new_tokens", 8}}}});
  v1::AskResponse r;
  auto code = [&](const v1::AskRequest& request) { return ask(*daemon, request, r).error_code(); };
  EXPECT_EQ(code(ask_request("")), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(ask_request("   ")), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(ask_request(std::string(101, 'a'))), grpc::StatusCode::INVALID_ARGUMENT);
  v1::AskRequest bad_route = ask_request("Dune");
  bad_route.set_route(static_cast<v1::Route>(42));
  EXPECT_EQ(code(bad_route), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(ask_request("Dune", -1)), grpc::StatusCode::INVALID_ARGUMENT);
  // Invalid UTF-8 is refused naming the field, on every method with text
  // (the C++ stub refuses to send it, so the bytes go through a generic stub).
  v1::AskRequest bad_text = ask_request("caf\xc3(");
  bad_text.set_user_id("ok");
  EXPECT_EQ(raw_call(*daemon, "Ask", bad_text), "INVALID_ARGUMENT text: not valid UTF-8");
  EXPECT_EQ(raw_call(*daemon, "AskStream", bad_text), "INVALID_ARGUMENT text: not valid UTF-8");
  EXPECT_EQ(raw_call(*daemon, "Compare", bad_text), "INVALID_ARGUMENT text: not valid UTF-8");
  v1::AskRequest bad_user = ask_request("Dune");
  bad_user.set_user_id("\xff");
  EXPECT_EQ(raw_call(*daemon, "Ask", bad_user), "INVALID_ARGUMENT user_id: not valid UTF-8");
  v1::ClassifyRequest classify;
  classify.set_text("\xc0\xae");
  EXPECT_EQ(raw_call(*daemon, "Classify", classify), "INVALID_ARGUMENT text: not valid UTF-8");
  v1::FeedbackRequest feedback;
  feedback.set_response_id("r-1");
  feedback.set_comment("ok \xed\xa0\x80");  // a surrogate
  EXPECT_EQ(raw_call(*daemon, "Feedback", feedback), "INVALID_ARGUMENT comment: not valid UTF-8");
  EXPECT_EQ(raw_call(*daemon, "Ask", std::string("\x0a\xff")),
            "INVALID_ARGUMENT the request is not a valid vitrine.v1.AskRequest message");

  // Settings that once ended the process in sampling: answered (a tiny
  // temperature is greedy), or refused when not finite.
  for (const double tiny : {1e-45, 1e-300, 5e-324}) {
    v1::AskRequest cold = ask_request("Dune", 2);
    cold.mutable_generation()->set_temperature(tiny);
    EXPECT_TRUE(ask(*daemon, cold, r).ok()) << tiny;
  }
  v1::AskRequest narrow = ask_request("Dune", 2);
  narrow.mutable_generation()->set_temperature(0.8);
  narrow.mutable_generation()->set_top_p(1e-300);
  EXPECT_TRUE(ask(*daemon, narrow, r).ok());
  narrow.mutable_generation()->set_top_p(0);
  narrow.mutable_generation()->set_repetition_penalty(1e-300);
  EXPECT_TRUE(ask(*daemon, narrow, r).ok());
  v1::AskRequest nan = ask_request("Dune", 2);
  nan.mutable_generation()->set_temperature(std::nan(""));
  EXPECT_EQ(code(nan), grpc::StatusCode::INVALID_ARGUMENT);

  grpc::ClientContext past;
  past.set_deadline(std::chrono::system_clock::now() - 1s);
  EXPECT_EQ(daemon->stub().Ask(&past, ask_request("Dune"), &r).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);

  // Still serving; more tokens than the limit (as chat clients ask) means
  // up to the limit.
  EXPECT_TRUE(ask(*daemon, ask_request("Dune", 2), r).ok());
  const grpc::Status many = ask(*daemon, ask_request("Dune", 100000), r);
  EXPECT_TRUE(many.ok()) << many.error_message();
  EXPECT_GE(r.usage().completion_tokens(), 1);
  EXPECT_LE(r.usage().completion_tokens(), 16);
  if (r.usage().completion_tokens() == 16) {
    EXPECT_EQ(r.finish_reason(), "length");
  }
  const std::string text = metrics();
  EXPECT_NE(text.find("vitrine_errors_total{code=\"INVALID_ARGUMENT\"} 13"), std::string::npos)
      << text;
  EXPECT_NE(text.find("vitrine_requests_total{method=\"Classify\",route=\"\",arm=\"\",code="
                      "\"INVALID_ARGUMENT\"} 1"),
            std::string::npos)
      << text;
}

v1::Turn* add_turn(v1::AskRequest& request, v1::Turn::Role role, const std::string& text) {
  v1::Turn* turn = request.add_history();
  turn->set_role(role);
  turn->set_text(text);
  return turn;
}

TEST_F(Vitrined, ConversationsAreAnsweredWithinTheirLimits) {
  auto daemon = start({{"engine", {{"max_history_turns", 4}, {"max_history_bytes", 20000}}}});
  const Json first = read_jsonl(dir_->path() / "ds" / "tasks" / "describe" / "test.jsonl", 1)[0];
  const std::string title = first["prompt"];

  // A follow-up that names no product is about the one named before.
  v1::AskRequest follow_up = ask_request("and who wrote it?", 4, v1::ROUTE_QA);
  add_turn(follow_up, v1::Turn::ROLE_USER, title);
  add_turn(follow_up, v1::Turn::ROLE_ASSISTANT, "A fine product.");
  add_turn(follow_up, v1::Turn::ROLE_SYSTEM, "Answer briefly.");
  v1::AskResponse r;
  ASSERT_TRUE(ask(*daemon, follow_up, r).ok());
  EXPECT_TRUE(r.product_found());
  ASSERT_GE(r.sources_size(), 1);
  EXPECT_EQ(r.sources(0).title(), title);
  EXPECT_EQ(r.sources(0).evidence(), "earlier turn");
  EXPECT_EQ(r.sources(0).history_index(), 0);
  EXPECT_EQ(r.history_turns_used(), 2);
  EXPECT_EQ(r.history_turns_dropped(), 0);
  // Named by the text itself, a source says so.
  v1::AskResponse direct;
  ASSERT_TRUE(ask(*daemon, ask_request(title, 2, v1::ROUTE_QA), direct).ok());
  ASSERT_GE(direct.sources_size(), 1);
  EXPECT_EQ(direct.sources(0).evidence(), "text");
  EXPECT_EQ(direct.history_turns_used(), 0);

  // Turns past engine.max_prompt_tokens are left out, oldest first (the
  // question names its product: one about none would need no prompt).
  v1::AskRequest long_talk = ask_request("and who wrote " + title + "?", 2, v1::ROUTE_QA);
  std::string chapter;
  while (chapter.size() < 3000) chapter += "the little dog ran to the park and saw a bird. ";
  for (int i = 0; i < 4; ++i) {
    add_turn(long_talk, i % 2 ? v1::Turn::ROLE_ASSISTANT : v1::Turn::ROLE_USER, chapter);
  }
  ASSERT_TRUE(ask(*daemon, long_talk, r).ok());
  EXPECT_GT(r.history_turns_dropped(), 0);
  EXPECT_EQ(r.history_turns_used() + r.history_turns_dropped(), 4);
  EXPECT_LE(r.usage().prompt_tokens(), 1024);

  // Over the limits: INVALID_ARGUMENT naming the turn.
  auto refusal = [&](const v1::AskRequest& request) {
    const grpc::Status s = ask(*daemon, request, r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    return s.error_message();
  };
  v1::AskRequest chatty = ask_request("and then?", 2);
  for (int i = 0; i < 5; ++i) add_turn(chatty, v1::Turn::ROLE_USER, "ok");
  EXPECT_NE(refusal(chatty).find("history: 5 turns, more than the limit of 4"), std::string::npos);
  v1::AskRequest big = ask_request("and then?", 2);
  add_turn(big, v1::Turn::ROLE_USER, "ok");
  add_turn(big, v1::Turn::ROLE_ASSISTANT, std::string(20000, 'y'));
  EXPECT_NE(refusal(big).find("history[1].text:"), std::string::npos);
  v1::AskRequest unspecified = ask_request("and then?", 2);
  add_turn(unspecified, v1::Turn::ROLE_USER, "ok");
  add_turn(unspecified, v1::Turn::ROLE_UNSPECIFIED, "who?");
  EXPECT_NE(refusal(unspecified).find("history[1].role:"), std::string::npos);
  v1::AskRequest bad_text = ask_request("and then?", 2);
  add_turn(bad_text, v1::Turn::ROLE_USER, "ok");
  add_turn(bad_text, v1::Turn::ROLE_ASSISTANT, "caf\xc3(");
  EXPECT_EQ(raw_call(*daemon, "Ask", bad_text),
            "INVALID_ARGUMENT history[1].text: not valid UTF-8");
}

// The integer columns of every row `sql` selects from the response log at
// `path`, opened read-only.
std::vector<std::vector<int64_t>> query_log(const fs::path& path, const char* sql) {
  std::vector<std::vector<int64_t>> rows;
  sqlite3* db = nullptr;
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db, sql, -1, &statement, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << path << ": " << sqlite3_errmsg(db);
    sqlite3_close(db);
    return rows;
  }
  while (sqlite3_step(statement) == SQLITE_ROW) {
    std::vector<int64_t>& row = rows.emplace_back();
    for (int i = 0; i < sqlite3_column_count(statement); ++i) {
      row.push_back(sqlite3_column_int64(statement, i));
    }
  }
  sqlite3_finalize(statement);
  sqlite3_close(db);
  return rows;
}

// AskStream's text pieces and its last answer.
struct Streamed {
  std::vector<std::string> pieces;
  v1::AskResponse answer;
  grpc::Status status;
};
Streamed ask_stream(Daemon& daemon, const v1::AskRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 60s);
  auto reader = daemon.stub().AskStream(&context, request);
  Streamed out;
  v1::AskStreamEvent event;
  while (reader->Read(&event)) {
    if (event.has_answer()) {
      out.answer = event.answer();
    } else {
      out.pieces.push_back(event.text());
    }
  }
  out.status = reader->Finish();
  return out;
}

TEST_F(Vitrined, AQuestionAboutNoProductIsAnsweredHonestlyInItsLanguage) {
  auto daemon = start();  // routing.unknown_product: say, as shipped
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"What is the battery life of the zq-9000 hyperdrive?", "I don't know that product: "},
      {"Qual é a duração da bateria do zq-9000 hyperdrive?", "Não conheço esse produto: "}};
  for (const auto& [question, opening] : cases) {
    v1::AskResponse r;
    ASSERT_TRUE(ask(*daemon, ask_request(question, 24), r).ok()) << question;
    EXPECT_EQ(r.route().agent(), "qa") << question;
    EXPECT_FALSE(r.product_found());
    EXPECT_TRUE(r.sources().empty());
    EXPECT_EQ(r.text().rfind(opening, 0), 0u) << r.text();
    EXPECT_EQ(r.finish_reason(), "stop");
    // No model ran: no adapter, no tokens.
    EXPECT_EQ(r.route().adapter(), "");
    EXPECT_EQ(r.usage().prompt_tokens(), 0);
    EXPECT_EQ(r.usage().completion_tokens(), 0);
    // The closest titles: named in the text, below the bar of a product.
    EXPECT_LE(r.closest_size(), 3);
    for (const v1::Source& c : r.closest()) {
      EXPECT_NE(r.text().find("\"" + c.title() + "\""), std::string::npos) << c.title();
      EXPECT_GE(c.score(), 0.25);
      EXPECT_LT(c.score(), 0.6);
      EXPECT_FALSE(c.uid().empty());
    }
    // Streamed: the same text, in one piece.
    const Streamed streamed = ask_stream(*daemon, ask_request(question, 24));
    ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
    EXPECT_EQ(streamed.pieces, std::vector<std::string>{r.text()});
    EXPECT_EQ(streamed.answer.text(), r.text());
    EXPECT_EQ(streamed.answer.closest_size(), r.closest_size());
    EXPECT_FALSE(streamed.answer.product_found());
    // Compare: the same answer on both sides.
    grpc::ClientContext context;
    v1::CompareResponse compared;
    ASSERT_TRUE(daemon->stub().Compare(&context, ask_request(question, 24), &compared).ok());
    EXPECT_EQ(compared.base().text(), r.text());
    EXPECT_EQ(compared.tuned().text(), r.text());
    EXPECT_EQ(compared.tuned().finish_reason(), "stop");
  }
  // The catalogue has titles near the English question's words.
  v1::AskResponse english;
  ASSERT_TRUE(ask(*daemon, ask_request(cases[0].first, 24), english).ok());
  EXPECT_GT(english.closest_size(), 0);

  // Follow-ups in either language are about the product an earlier turn named,
  // and answered by the model; alone, they are about no known product.
  const std::string title =
      read_jsonl(dir_->path() / "ds" / "tasks" / "describe" / "test.jsonl", 1)[0]["prompt"];
  for (const auto& [follow_up, opening] : std::vector<std::pair<std::string, std::string>>{
           {"and who wrote it?", cases[0].second}, {"e quem escreveu?", cases[1].second}}) {
    v1::AskRequest request = ask_request(follow_up, 4, v1::ROUTE_QA);
    add_turn(request, v1::Turn::ROLE_USER, title);
    add_turn(request, v1::Turn::ROLE_ASSISTANT, "A fine product.");
    v1::AskResponse r;
    ASSERT_TRUE(ask(*daemon, request, r).ok());
    EXPECT_TRUE(r.product_found()) << follow_up;
    ASSERT_GE(r.sources_size(), 1);
    EXPECT_EQ(r.sources(0).title(), title);
    EXPECT_EQ(r.sources(0).evidence(), "earlier turn");
    EXPECT_GT(r.usage().completion_tokens(), 0);
    EXPECT_EQ(r.closest_size(), 0);
    v1::AskResponse alone;
    ASSERT_TRUE(ask(*daemon, ask_request(follow_up, 4, v1::ROUTE_QA), alone).ok());
    EXPECT_FALSE(alone.product_found()) << follow_up;
    EXPECT_EQ(alone.text().rfind(opening, 0), 0u) << alone.text();
  }

  // The log keeps them, answered by no model, and ab-report reads it.
  EXPECT_EQ(daemon->stop(SIGTERM), 0);
  // In English: Ask, AskStream, Compare's two, Ask again, a follow-up alone.
  EXPECT_EQ(query_log(work_ / "responses.sqlite",
                      "SELECT count(*) FROM responses WHERE route = 'none' AND agent = 'qa' AND "
                      "adapter = '' AND finish_reason = 'stop' AND status_code = 0 AND output "
                      "LIKE 'I don''t know that product:%'"),
            (std::vector<std::vector<int64_t>>{{6}}));
  const auto report =
      run_vitrine(fmt::format("ab-report --json --log {}", (work_ / "responses.sqlite").string()));
  ASSERT_EQ(report.exit_code, 0) << report.output;
  int64_t said = -1;
  const Json parsed = Json::parse(report.output);
  for (const Json& row : parsed["rows"]) {
    if (row["experiment"] == "" && row["arm"] == "none") said = row["requests"].get<int64_t>();
  }
  EXPECT_EQ(said, 11) << report.output;  // 6 in English, 5 in Portuguese
}

TEST_F(Vitrined, WithUnknownProductGenerateTheModelAnswersAndTheClosestTitlesAreStillOffered) {
  auto daemon = start({{"routing", {{"unknown_product", "generate"}, {"unknown_closest", 2}}}});
  v1::AskResponse r;
  ASSERT_TRUE(
      ask(*daemon, ask_request("What is the battery life of the zq-9000 hyperdrive?", 8), r).ok());
  EXPECT_FALSE(r.product_found());
  EXPECT_EQ(r.route().adapter(), "qa");
  EXPECT_GT(r.usage().prompt_tokens(), 0);
  EXPECT_GT(r.usage().completion_tokens(), 0);
  EXPECT_EQ(r.text().find("I don't know that product"), std::string::npos) << r.text();
  EXPECT_GE(r.closest_size(), 1);
  EXPECT_LE(r.closest_size(), 2);
}

TEST_F(Vitrined, AFloodBeyondTheQueueIsRefusedAndCancellingFreesTheRow) {
  auto daemon = start({{"engine", {{"max_batch", 1}, {"max_queue", 1}, {"max_new_tokens", 400}}}});
  // One row, one queue place: of 8 long requests at once, some are refused.
  std::vector<std::future<grpc::StatusCode>> flood;
  for (int i = 0; i < 8; ++i) {
    flood.push_back(std::async(std::launch::async, [&] {
      v1::AskResponse r;
      return ask(*daemon, long_request(400), r).error_code();
    }));
  }
  int ok = 0, exhausted = 0;
  for (auto& f : flood) {
    const grpc::StatusCode c = f.get();
    ok += c == grpc::StatusCode::OK;
    exhausted += c == grpc::StatusCode::RESOURCE_EXHAUSTED;
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(exhausted, 1);
  EXPECT_EQ(ok + exhausted, 8);

  // A stream cancelled after its first piece leaves the batch at once.
  grpc::ClientContext context;
  auto reader = daemon->stub().AskStream(&context, long_request(400));
  v1::AskStreamEvent event;
  ASSERT_TRUE(reader->Read(&event));
  context.TryCancel();
  while (reader->Read(&event)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The only row is free: the next request is served.
  v1::AskResponse next;
  EXPECT_TRUE(ask(*daemon, ask_request("Dune", 2), next).ok());
  // The stream's handler records it once the engine has let it go.
  std::string text;
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < give_up) {
    text = metrics();
    if (text.find("code=\"CANCELLED\"") != std::string::npos) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_NE(text.find("vitrine_requests_total{method=\"AskStream\",route=\"qa\",arm=\"\",code="
                      "\"CANCELLED\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("vitrine_batch_size 0"), std::string::npos) << text;
  EXPECT_NE(
      text.find("vitrine_errors_total{code=\"RESOURCE_EXHAUSTED\"} " + std::to_string(exhausted)),
      std::string::npos)
      << text;
  // The log holds the cancelled answer, cut short of its 400 tokens.
  EXPECT_EQ(daemon->stop(SIGTERM), 0);
  const auto cancelled = query_log(work_ / "responses.sqlite",
                                   "SELECT completion_tokens, status_code FROM responses WHERE "
                                   "finish_reason = 'cancelled'");
  ASSERT_EQ(cancelled.size(), 1u);
  EXPECT_GE(cancelled[0][0], 1);
  EXPECT_LT(cancelled[0][0], 400);
  EXPECT_EQ(cancelled[0][1], static_cast<int64_t>(grpc::StatusCode::CANCELLED));
}

// Writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, with the openssl program.
bool make_certificates(const fs::path& dir) {
  const std::string d = dir.string();
  const std::string cmd = fmt::format(
      "cd {0} && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca "
      "-keyout ca.key -out ca.pem && "
      "openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr "
      "&& "
      "printf 'subjectAltName=IP:127.0.0.1' > san.ext && "
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      "-extfile san.ext -out server.pem && "
      "openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client.key -out client.csr && "
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      "-out client.pem",
      d);
  return std::system(("(" + cmd + ") > /dev/null 2>&1").c_str()) == 0;
}

TEST_F(Vitrined, TlsWithClientCertificatesAndTokensAreEnforced) {
  const fs::path certs = work_ / "certs";
  fs::create_directories(certs);
  if (!make_certificates(certs)) GTEST_SKIP() << "openssl could not make test certificates";
  testing::write_file(work_ / "users", "# user tokens\nuser-token\n");
  testing::write_file(work_ / "admins", "admin-token\n");
  grpc::SslCredentialsOptions with_cert;
  with_cert.pem_root_certs = testing::read_file(certs / "ca.pem");
  with_cert.pem_cert_chain = testing::read_file(certs / "client.pem");
  with_cert.pem_private_key = testing::read_file(certs / "client.key");
  auto daemon = start({{"tls",
                        {{"cert", (certs / "server.pem").string()},
                         {"key", (certs / "server.key").string()},
                         {"client_ca", (certs / "ca.pem").string()}}},
                       {"auth",
                        {{"user_tokens_file", (work_ / "users").string()},
                         {"admin_tokens_file", (work_ / "admins").string()}}}},
                      grpc::SslCredentials(with_cert));
  v1::AskResponse r;
  const v1::AskRequest request = ask_request("Dune", 2);
  EXPECT_EQ(ask(*daemon, request, r).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ask(*daemon, request, r, "wrong").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(ask(*daemon, request, r, "user-token").ok());
  EXPECT_TRUE(ask(*daemon, request, r, "admin-token").ok());

  auto reload = [&](const std::string& token) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    v1::ListAdaptersResponse list;
    return daemon->stub().ReloadAdapters(&context, v1::ReloadAdaptersRequest(), &list).error_code();
  };
  EXPECT_EQ(reload("user-token"), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(reload("admin-token"), grpc::StatusCode::OK);
  // The token is checked before the request is read: bad bytes without one
  // are UNAUTHENTICATED. Every refusal is counted by its code.
  EXPECT_EQ(raw_call(*daemon, "Ask", ask_request("caf\xc3(")).substr(0, 15), "UNAUTHENTICATED");
  const std::string text = metrics();
  EXPECT_NE(text.find("vitrine_errors_total{code=\"UNAUTHENTICATED\"} 3"), std::string::npos)
      << text;
  EXPECT_NE(text.find("vitrine_errors_total{code=\"PERMISSION_DENIED\"} 1"), std::string::npos)
      << text;

  // Without TLS, or without a client certificate, no call gets through.
  auto refused = [&](std::shared_ptr<grpc::ChannelCredentials> credentials) {
    auto stub = v1::ChatService::NewStub(grpc::CreateChannel(address_, credentials));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 5s);
    context.AddMetadata("authorization", "Bearer admin-token");
    v1::AskResponse response;
    return stub->Ask(&context, request, &response).error_code();
  };
  EXPECT_EQ(refused(grpc::InsecureChannelCredentials()), grpc::StatusCode::UNAVAILABLE);
  grpc::SslCredentialsOptions no_cert;
  no_cert.pem_root_certs = with_cert.pem_root_certs;
  EXPECT_EQ(refused(grpc::SslCredentials(no_cert)), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(Vitrined, ANewVersionIsPickedUpWithoutFailingARequest) {
  auto daemon = start({{"reload_seconds", 1}});
  std::atomic<bool> running{true};
  std::atomic<int> failures{0}, answered{0};
  std::set<int64_t> versions;
  std::mutex mutex;
  std::thread client([&] {
    while (running.load()) {
      v1::AskResponse r;
      const grpc::Status s = ask(*daemon, ask_request("Dune", 8, v1::ROUTE_DESCRIBE), r);
      if (!s.ok()) {
        ++failures;
        continue;
      }
      ++answered;
      std::lock_guard lock(mutex);
      versions.insert(r.route().adapter_version());
    }
  });
  std::this_thread::sleep_for(300ms);
  copy_adapter(dir_->path() / "run" / "adapters" / "describe",
               work_ / "adapters" / "describe" / "v2");
  // The poll (every second) attaches v2; new requests use it.
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < give_up) {
    {
      std::lock_guard lock(mutex);
      if (versions.count(2) > 0) break;
    }
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(300ms);
  running.store(false);
  client.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(versions, (std::set<int64_t>{1, 2}));

  grpc::ClientContext context;
  v1::ListAdaptersResponse list;
  ASSERT_TRUE(daemon->stub().ListAdapters(&context, v1::ListAdaptersRequest(), &list).ok());
  std::map<std::string, int64_t> listed;
  for (const auto& a : list.adapters()) listed[a.name()] = a.version();
  EXPECT_EQ(listed["describe"], 2);
  EXPECT_EQ(listed["qa"], 1);
}

TEST_F(Vitrined, ExperimentsSplitUsersStablyAndTheReportComparesTheArms) {
  testing::write_file(work_ / "experiments.yaml",
                      "experiments:\n"
                      "  - name: tuned-vs-base\n"
                      "    routes: [describe]\n"
                      "    arms:\n"
                      "      - {name: base, adapter_version: -1, weight: 1}\n"
                      "      - {name: tuned, adapter_version: 0, weight: 1}\n");
  auto daemon = start({{"experiments", (work_ / "experiments.yaml").string()}});
  std::map<std::string, std::string> arm_of;  // user -> arm
  std::map<std::string, int> per_arm;
  for (int i = 0; i < 40; ++i) {
    const std::string user = fmt::format("user-{}", i % 20);
    v1::AskRequest request = ask_request("Dune", 2, v1::ROUTE_DESCRIBE);
    request.set_user_id(user);
    v1::AskResponse r;
    ASSERT_TRUE(ask(*daemon, request, r).ok());
    EXPECT_EQ(r.experiment(), "tuned-vs-base");
    // The arm decides the model: no adapter for base, the current one for tuned.
    EXPECT_EQ(r.route().adapter(), r.arm() == "base" ? "" : "describe") << r.arm();
    if (arm_of.count(user) > 0) {
      EXPECT_EQ(arm_of[user], r.arm()) << user;  // stable
    }
    arm_of[user] = r.arm();
    ++per_arm[r.arm()];
    if (i < 4) {
      grpc::ClientContext context;
      v1::FeedbackRequest feedback;
      feedback.set_response_id(r.response_id());
      feedback.set_rating(r.arm() == "tuned" ? 1 : -1);
      v1::FeedbackResponse nothing;
      EXPECT_TRUE(daemon->stub().Feedback(&context, feedback, &nothing).ok());
    }
  }
  EXPECT_GT(per_arm["base"], 0);
  EXPECT_GT(per_arm["tuned"], 0);
  // Questions are in no experiment.
  v1::AskResponse question;
  ASSERT_TRUE(ask(*daemon, ask_request("What is Dune about?", 2, v1::ROUTE_QA), question).ok());
  EXPECT_EQ(question.experiment(), "");

  const testing::CliRun report =
      run_vitrine(fmt::format("ab-report --json --log {}", (work_ / "responses.sqlite").string()));
  ASSERT_EQ(report.exit_code, 0) << report.output;
  std::map<std::string, int64_t> reported;
  const Json parsed = Json::parse(report.output);
  for (const Json& row : parsed["rows"]) {
    if (row["experiment"] == "tuned-vs-base") {
      reported[row["arm"].get<std::string>()] = row["requests"].get<int64_t>();
    }
  }
  EXPECT_EQ(reported["base"], per_arm["base"]) << report.output;
  EXPECT_EQ(reported["tuned"], per_arm["tuned"]);
}

TEST_F(Vitrined, SigtermDrainsTheRequestsInFlightAndExitsZero) {
  auto daemon = start();
  // A long answer in flight when the signal comes.
  grpc::ClientContext context;
  auto reader = daemon->stub().AskStream(&context, long_request(200));
  v1::AskStreamEvent event;
  ASSERT_TRUE(reader->Read(&event));
  std::promise<int> exit_code;
  std::thread stopper([&] { exit_code.set_value(daemon->stop(SIGTERM)); });
  // Health turns NOT_SERVING and new requests are refused while it drains.
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  int status = 1;
  while (std::chrono::steady_clock::now() < give_up && status == 1) {
    status = health(daemon->channel());
  }
  EXPECT_EQ(status, 2);
  v1::AskResponse refused;
  const grpc::Status s = ask(*daemon, ask_request("Dune", 2), refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  // The request in flight ends with its whole answer.
  v1::AskResponse answer;
  while (reader->Read(&event)) {
    if (event.has_answer()) answer = event.answer();
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_FALSE(answer.response_id().empty());
  stopper.join();
  EXPECT_EQ(exit_code.get_future().get(), 0);
}

TEST_F(Vitrined, RequestsCutByTheShutdownGetUnavailable) {
  // No grace period: the answers running when SIGTERM comes are cut.
  auto daemon = start({{"drain_seconds", 0}, {"engine", {{"max_new_tokens", 400}}}});
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::AskStreamEvent>>> readers;
  v1::AskStreamEvent event;
  for (int i = 0; i < 4; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(daemon->stub().AskStream(contexts.back().get(), long_request(400)));
    ASSERT_TRUE(readers.back()->Read(&event));
  }
  const auto started = std::chrono::steady_clock::now();
  std::promise<int> exit_code;
  std::thread stopper([&] { exit_code.set_value(daemon->stop(SIGTERM)); });
  std::map<grpc::StatusCode, int> codes;
  for (auto& reader : readers) {
    while (reader->Read(&event)) {
    }
    ++codes[reader->Finish().error_code()];
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  stopper.join();
  EXPECT_EQ(exit_code.get_future().get(), 0);
  // Whatever had not ended by itself hears "ask again", never CANCELLED.
  EXPECT_GE(codes[grpc::StatusCode::UNAVAILABLE], 1) << seconds << " s";
  EXPECT_EQ(codes[grpc::StatusCode::UNAVAILABLE] + codes[grpc::StatusCode::OK], 4);
}

// Before, only v1alpha reflection was served (clients try v1 first) and
// grpc.health.v1.Health was listed but had no descriptor to describe or
// call it with.
TEST_F(Vitrined, ReflectionV1AndV1alphaDescribeTheServiceAndHealthCallableFromThem) {
  auto daemon = start();
  testing::expect_reflection_serves(
      daemon->channel(), "vitrine.v1.ChatService",
      {"Ask", "AskStream", "Compare", "Classify", "ListAdapters", "Feedback", "ReloadAdapters"},
      "vitrine.v1.ChatService");
}

TEST(VitrinedStart, APortAnotherServerHoldsIsRefusedNamingIt) {
  // Before, the second daemon bound the port beside the first (SO_REUSEPORT)
  // and took half its connections.
  const testing::HeldPort held;
  const testing::CliRun r = testing::run_program(
      "router/vitrined", fmt::format("--listen 127.0.0.1:{} --metrics-listen ''", held.port()));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(fmt::format("port {} is in use by another process", held.port())),
            std::string::npos)
      << r.output;
}

TEST(VitrinedStart, ATlsKeyOfAnotherPairIsRefusedNamingBothFiles) {
  testing::TempDir dir;
  if (!make_certificates(dir.path())) GTEST_SKIP() << "openssl could not make test certificates";
  const fs::path config = dir / "router.yaml";
  testing::write_file(config, fmt::format("listen: 127.0.0.1:{}\nmetrics_listen: \"\"\n"
                                          "tls:\n  cert: {}\n  key: {}\n",
                                          testing::free_port(), (dir / "server.pem").string(),
                                          (dir / "client.key").string()));
  const testing::CliRun r = testing::run_program("router/vitrined", "--config " + config.string());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("client.key' is not the private key of tls.cert"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("server.pem"), std::string::npos) << r.output;
}

// Before, vitrined had no --version and passed CLI11's own exit codes on
// (109 for an unknown flag, 114 for a missing value).
TEST(VitrinedStart, VersionUsageErrorsAndFailuresHaveTheirExitCodes) {
  testing::expect_version_line("router/vitrined", "vitrined");
  testing::expect_exit_codes("router/vitrined", {{"--help", 0},
                                                 {"--no-such-flag", 2},
                                                 {"--listen", 2},
                                                 {"extra-argument", 2},
                                                 {"--config /nonexistent/router.yaml", 1}});
}

TEST(VitrinedConfig, ShippedConfigHoldsExactlyTheDefaults) {
  auto run = [](const std::string& args) { return testing::run_program("router/vitrined", args); };
  const testing::CliRun r =
      run(fmt::format("--config {}/configs/router.yaml --print-config", VITRINE_SOURCE_DIR));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::ordered_json::parse(r.output),
            router::router_config_to_json(router::RouterConfig{}))
      << "configs/router.yaml and the defaults in the code disagree";
  testing::TempDir dir;
  testing::write_file(dir / "typo.yaml", "engine:\n  max_batchs: 3\n");
  const testing::CliRun typo =
      run(fmt::format("--print-config --config {}", (dir / "typo.yaml").string()));
  EXPECT_EQ(typo.exit_code, 1);
  EXPECT_NE(typo.output.find("unknown config key 'router.engine.max_batchs'"), std::string::npos)
      << typo.output;
  testing::write_file(dir / "bad.yaml", "routing:\n  default_route: base\n");
  const testing::CliRun bad =
      run(fmt::format("--print-config --config {}", (dir / "bad.yaml").string()));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("router.routing.default_route"), std::string::npos) << bad.output;
  // The unknown-product keys are checked the same way, each named.
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"unknown_product", "refuse"},
                                                        {"unknown_closest", "-1"},
                                                        {"unknown_closest_min_score", "1.5"}}) {
    testing::write_file(dir / "bad.yaml", fmt::format("routing:\n  {}: {}\n", key, value));
    const testing::CliRun refused =
        run(fmt::format("--print-config --config {}", (dir / "bad.yaml").string()));
    EXPECT_EQ(refused.exit_code, 1) << key;
    EXPECT_NE(refused.output.find("router.routing." + key), std::string::npos) << refused.output;
  }
}

// grounding: adapter (the default) asks each adapter as it was trained; a
// word overrides it for all; the old name says its new one. qa_adapter must
// be one of the adapters loaded.
TEST(VitrinedConfig, GroundingAndTheQaAdapterAreChecked) {
  router::RouterConfig config;
  router::apply_router_config(nlohmann::json::parse(R"({"routing": {"grounding": "adapter"}})"),
                              config);
  EXPECT_FALSE(config.routing.qa.grounding.has_value());
  EXPECT_EQ(config.answerer.qa_adapter, "qa");
  router::apply_router_config(
      nlohmann::json::parse(R"({"qa_adapter": "qa_grounded", "routing": {"grounding": "title"}})"),
      config);
  EXPECT_EQ(config.routing.qa.grounding, prompts::Grounding::kTitle);
  EXPECT_EQ(config.answerer.qa_adapter, "qa_grounded");
  EXPECT_EQ(router::router_config_to_json(config)["routing"]["grounding"], "title");
  auto refusal = [](const char* json) {
    router::RouterConfig c;
    try {
      router::apply_router_config(nlohmann::json::parse(json), c);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_NE(refusal(R"({"routing": {"grounding": "title_and_description"}})")
                .find("is now called 'description'"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"routing": {"grounding": "everything"}})").find("router.routing.grounding"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"adapters": ["describe", "qa"], "qa_adapter": "qa_grounded"})")
                .find("router.qa_adapter"),
            std::string::npos);
}

}  // namespace
}  // namespace vitrine
