// The end-to-end fixture of the gateway's tests: one vitrined for the
// suite, serving ../shared's stories260K-hf with describe and qa adapters and
// a classifier trained for it, and one vitrine-gateway with client tokens in
// front of it; both child processes on loopback. Tests skip without ../shared.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/ports.h"
#include "tests/support/serving.h"

namespace vitrine {

class Gateway : public ::testing::Test {
 protected:
  using Json = nlohmann::json;

  static void SetUpTestSuite() {
    const auto inputs = testing::sample_and_model();
    if (!inputs) return;
    const std::filesystem::path& model = inputs->model;
    dir_ = new testing::TempDir();
    const std::filesystem::path d = dir_->path();
    ASSERT_TRUE(testing::prepare_and_train(inputs->sample, model, d));
    // One daemon for the suite, and a gateway with tokens in front of it.
    const std::string daemon = fmt::format("127.0.0.1:{}", testing::free_port());
    metrics_ = fmt::format("127.0.0.1:{}", testing::free_port());
    const Json router = {{"listen", daemon},
                         {"model", model.string()},
                         {"adapters_dir", (d / "published").string()},
                         {"classifier", (d / "run" / "classifier").string()},
                         {"catalog", (d / "ds" / "catalog.sqlite").string()},
                         {"response_log", (d / "responses.sqlite").string()},
                         {"threads", 1},
                         {"metrics_listen", metrics_},
                         {"engine", {{"max_new_tokens", 400}, {"default_new_tokens", 24}}}};
    testing::write_file(d / "router.yaml", router.dump());
    daemon_ = new testing::Daemon(d / "router.yaml", grpc::InsecureChannelCredentials(), daemon);
    ASSERT_TRUE(daemon_->wait_serving());
    testing::write_file(d / "tokens", "client-token\n");
    address_ = fmt::format("127.0.0.1:{}", testing::free_port());
    const Json gateway = {{"listen", address_},
                          {"daemon", daemon},
                          {"tokens_file", (d / "tokens").string()},
                          {"cors_origins", {"https://chat.example"}},
                          {"max_body_bytes", 4096},
                          {"timeout_seconds", 60}};
    testing::write_file(d / "gateway.yaml", gateway.dump());
    gateway_ = new testing::ChildProcess("gateway/vitrine-gateway",
                                         {"--config", (d / "gateway.yaml").string()});
    for (int i = 0; i < 200; ++i) {
      httplib::Client probe("http://" + address_);
      if (const auto r = probe.Get("/readyz"); r && r->status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "the gateway did not become ready";
  }
  static void TearDownTestSuite() {
    delete gateway_;
    delete daemon_;
    delete dir_;
    gateway_ = nullptr;
    daemon_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (dir_ == nullptr) GTEST_SKIP() << "../shared data or models not found";
  }

  static httplib::Client client(bool with_token = true) {
    httplib::Client c("http://" + address_);
    c.set_read_timeout(60);
    if (with_token) c.set_bearer_token_auth("client-token");
    return c;
  }
  static Json chat(const std::string& model, const std::string& text, int max_tokens,
                   bool stream = false) {
    return {{"model", model},
            {"messages", {{{"role", "user"}, {"content", text}}}},
            {"max_tokens", max_tokens},
            {"stream", stream}};
  }
  // The data lines of a server-sent event stream.
  static std::vector<std::string> events(const std::string& body) {
    std::vector<std::string> out;
    std::istringstream lines(body);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("data: ", 0) == 0) out.push_back(line.substr(6));
    }
    return out;
  }
  // The daemon's count of AskStream requests on `route` that ended CANCELLED.
  static int cancelled_streams(const std::string& route) {
    httplib::Client metrics("http://" + metrics_);
    const auto r = metrics.Get("/metrics");
    if (!r) return -1;
    const std::string key =
        fmt::format("{{method=\"AskStream\",route=\"{}\",arm=\"\",code=\"CANCELLED\"}} ", route);
    const size_t at = r->body.find(key);
    return at == std::string::npos ? 0 : std::stoi(r->body.substr(at + key.size()));
  }
  static std::string first_title() {
    std::ifstream in(dir_->path() / "ds" / "tasks" / "describe" / "test.jsonl");
    std::string line;
    std::getline(in, line);
    return Json::parse(line)["prompt"];
  }

  static inline testing::TempDir* dir_ = nullptr;
  static inline testing::Daemon* daemon_ = nullptr;
  static inline testing::ChildProcess* gateway_ = nullptr;
  static inline std::string address_, metrics_;
};

}  // namespace vitrine
