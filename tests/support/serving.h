// Serving tests' common parts: a vitrined child process, the gRPC health
// check by hand, and a dataset plus adapters and classifier trained for the
// test from ../shared's sample.
#pragma once

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/generic_call.h"
#include "tests/support/run_vitrine.h"
#include "tests/support/temp_dir.h"
#include "vitrine/v1/chat.grpc.pb.h"

namespace vitrine::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// grpc.health.v1.Health/Check of `service` by hand (the request is field 1,
// the answer's status field 1): 1 SERVING, 2 NOT_SERVING, -1 no answer.
inline int health(const std::shared_ptr<grpc::Channel>& channel, const std::string& service = "") {
  std::string request, bytes;
  if (!service.empty()) {
    request.push_back(0x0a);
    request.push_back(static_cast<char>(service.size()));
    request += service;
  }
  if (!unary_call(channel, "/grpc.health.v1.Health/Check", request, bytes).ok()) return -1;
  return bytes.size() == 2 && bytes[0] == 0x08 ? bytes[1] : 0;
}

// A child process running a program of the build (`program` relative to
// the build directory) with `args`; killed when destroyed.
class ChildProcess {
 public:
  ChildProcess(const std::string& program, const std::vector<std::string>& args) {
    pid_ = fork();
    if (pid_ == 0) {
      const std::string binary = std::string(VITRINE_BINARY_DIR) + "/" + program;
      std::vector<char*> argv{const_cast<char*>(binary.c_str())};
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
  }
  ~ChildProcess() { stop(SIGKILL); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // True while the process runs.
  bool running() {
    int status = 0;
    if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) pid_ = -1;
    return pid_ > 0;
  }
  // Sends the signal and returns the exit status (-1 if killed by a signal).
  int stop(int signal) {
    if (pid_ <= 0) return -2;
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
};

// A vitrined child process.
class Daemon {
 public:
  Daemon(const fs::path& config, std::shared_ptr<grpc::ChannelCredentials> credentials,
         const std::string& address)
      : address_(address), process_("router/vitrined", {"--config", config.string()}) {
    channel_ = grpc::CreateChannel(address_, std::move(credentials));
    stub_ = v1::ChatService::NewStub(channel_);
  }

  // Waits until health says SERVING; false after `limit` or if the process ended.
  bool wait_serving(std::chrono::seconds limit = 60s) {
    const auto give_up = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < give_up) {
      if (health(channel_) == 1) return true;
      if (!process_.running()) return false;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
  // Sends the signal and returns the exit status (-1 if killed).
  int stop(int signal) { return process_.stop(signal); }
  v1::ChatService::Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() { return channel_; }

 private:
  std::string address_;
  ChildProcess process_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ChatService::Stub> stub_;
};

inline void copy_adapter(const fs::path& from, const fs::path& to) {
  const fs::path staging = to.parent_path() / fmt::format(".{}.tmp", to.filename().string());
  fs::create_directories(to.parent_path());
  fs::copy(from, staging, fs::copy_options::recursive);
  fs::rename(staging, to);  // as the trainer service publishes: never half a version
}

// Prepares `sample` into <dir>/ds and trains describe and qa adapters (a
// few steps each) and the router classifier on it into <dir>/run; then
// publishes the adapters as <dir>/published/{describe,qa}/v1. False (with
// the output printed) when a step fails.
inline bool prepare_and_train(const fs::path& sample, const fs::path& model, const fs::path& d) {
  CliRun r = run_vitrine(
      fmt::format("prepare -q --input {} --out {}", sample.string(), (d / "ds").string()));
  if (r.exit_code != 0) {
    std::fprintf(stderr, "%s\n", r.output.c_str());
    return false;
  }
  nlohmann::json adapter = {
      {"max_steps", 8},       {"warmup_steps", 0},        {"learning_rate", 0.01},
      {"train_examples", 64}, {"validation_examples", 8}, {"max_seq_len", 96},
      {"batch_size", 4},      {"eval_every", 0},          {"checkpoint_every", 0}};
  nlohmann::json adapter_qa = adapter;
  adapter_qa["task"] = "qa";
  const nlohmann::json train = {{"base_model", model.string()},
                                {"dataset", (d / "ds").string()},
                                {"output", (d / "run").string()},
                                {"threads", 1},
                                {"adapters", {{"describe", adapter}, {"qa", adapter_qa}}}};
  write_file(d / "train.yaml", train.dump());
  r = run_vitrine(fmt::format("train -q --no-eval --config {}", (d / "train.yaml").string()));
  if (r.exit_code != 0) {
    std::fprintf(stderr, "%s\n", r.output.c_str());
    return false;
  }
  copy_adapter(d / "run" / "adapters" / "describe", d / "published" / "describe" / "v1");
  copy_adapter(d / "run" / "adapters" / "qa", d / "published" / "qa" / "v1");
  return true;
}

}  // namespace vitrine::testing
