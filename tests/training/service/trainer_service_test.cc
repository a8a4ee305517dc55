// The trainer service as a real `vitrine trainer serve` process on
// loopback, driven through its gRPC stub: the queue, the event stream,
// versioned publishing, cancellation, bad configs, and a job surviving a
// SIGKILL of the service.
#include "training/service/trainer_service.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "models/peft_adapter.h"
#include "tests/support/ports.h"
#include "tests/support/reflection.h"
#include "tests/support/run_vitrine.h"
#include "tests/support/temp_dir.h"
#include "vitrine/v1/trainer.grpc.pb.h"

namespace vitrine {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::run_vitrine;

// A `vitrine trainer serve` child process and a stub connected to it.
class Server {
 public:
  Server(const fs::path& state, const fs::path& adapters)
      : address_(fmt::format("127.0.0.1:{}", testing::free_port())) {
    pid_ = fork();
    if (pid_ == 0) {
      const std::string binary = std::string(VITRINE_BINARY_DIR) + "/cli/vitrine";
      const std::string state_arg = state.string(), adapters_arg = adapters.string();
      execl(binary.c_str(), binary.c_str(), "trainer", "serve", "--listen", address_.c_str(),
            "--state-dir", state_arg.c_str(), "--adapters-dir", adapters_arg.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    auto channel = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    connected_ =
        channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(60));
    stub_ = v1::TrainerService::NewStub(channel);
  }
  ~Server() { stop(SIGTERM); }

  // Sends the signal and reaps the process; returns its wait status.
  int stop(int signal) {
    if (pid_ <= 0) return 0;
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  bool connected() const { return connected_; }
  const std::string& address() const { return address_; }
  v1::TrainerService::Stub& stub() { return *stub_; }

 private:
  std::string address_;
  pid_t pid_ = -1;
  bool connected_ = false;
  std::unique_ptr<v1::TrainerService::Stub> stub_;
};

grpc::Status submit(Server& server, const std::string& config_json, v1::Job& job,
                    bool skip_eval = true, const std::string& name = "") {
  grpc::ClientContext context;
  v1::SubmitJobRequest request;
  request.set_config_json(config_json);
  request.set_name(name);
  request.set_skip_eval(skip_eval);
  request.set_eval_test_products(4);
  return server.stub().SubmitJob(&context, request, &job);
}

v1::Job get(Server& server, const std::string& id) {
  grpc::ClientContext context;
  v1::GetJobRequest request;
  request.set_job_id(id);
  v1::Job job;
  EXPECT_TRUE(server.stub().GetJob(&context, request, &job).ok());
  return job;
}

std::vector<v1::JobEvent> watch(Server& server, const std::string& id) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
  v1::WatchJobRequest request;
  request.set_job_id(id);
  auto reader = server.stub().WatchJob(&context, request);
  std::vector<v1::JobEvent> events;
  v1::JobEvent event;
  while (reader->Read(&event)) events.push_back(event);
  const grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  return events;
}

grpc::Status cancel(Server& server, const std::string& id, v1::Job& job) {
  grpc::ClientContext context;
  v1::CancelJobRequest request;
  request.set_job_id(id);
  return server.stub().CancelJob(&context, request, &job);
}

TEST(TrainerServiceStart, APortAnotherServerHoldsIsRefusedNamingIt) {
  const testing::HeldPort held;
  testing::TempDir tmp;
  const testing::CliRun r = run_vitrine(
      fmt::format("trainer serve --listen 127.0.0.1:{} --state-dir {} --adapters-dir {}",
                  held.port(), (tmp / "state").string(), (tmp / "adapters").string()));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(fmt::format("port {} is in use by another process", held.port())),
            std::string::npos)
      << r.output;
}

// The trainer offers the daemon's reflection and health (one shared
// piece of code): v1 and v1alpha, Health described and callable.
TEST(TrainerServiceStart, ReflectionV1AndV1alphaDescribeTheServiceAndHealthCallableFromThem) {
  testing::TempDir tmp;
  Server server(tmp / "state", tmp / "adapters");
  ASSERT_TRUE(server.connected());
  testing::expect_reflection_serves(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()),
      "vitrine.v1.TrainerService", {"SubmitJob", "WatchJob", "GetJob", "ListJobs", "CancelJob"},
      "");
}

TEST(TrainerServiceConfig, ShippedConfigHoldsExactlyTheDefaults) {
  const testing::CliRun r = run_vitrine(fmt::format(
      "trainer serve --config {}/configs/trainer.yaml --print-config", VITRINE_SOURCE_DIR));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::ordered_json::parse(r.output),
            trainer::trainer_service_config_to_json(trainer::TrainerServiceOptions{}))
      << "configs/trainer.yaml and the defaults in the code disagree";
  testing::TempDir dir;
  testing::write_file(dir / "typo.yaml", "max_queue: 3\n");
  const testing::CliRun typo = run_vitrine(
      fmt::format("trainer serve --print-config --config {}", (dir / "typo.yaml").string()));
  EXPECT_EQ(typo.exit_code, 1);
  EXPECT_NE(typo.output.find("unknown config key 'trainer.max_queue'"), std::string::npos)
      << typo.output;
}

class TrainerService : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto inputs = testing::sample_and_model();
    if (!inputs) return;
    dir_ = new testing::TempDir();
    const testing::CliRun r = run_vitrine(fmt::format(
        "prepare -q --input {} --out {}", inputs->sample.string(), (dir_->path() / "ds").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    model_ = inputs->model;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (dir_ == nullptr) GTEST_SKIP() << "../shared data or models not found";
    state_ = dir_->path() / ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  // A describe-only training config as JSON.
  static nlohmann::json config(int steps, int checkpoint_every, double dropout = 0) {
    return {{"base_model", model_.string()},
            {"dataset", (dir_->path() / "ds").string()},
            {"threads", 1},
            {"classifier", {{"enabled", false}}},
            {"adapters",
             {{"describe",
               {{"max_steps", steps},
                {"warmup_steps", 0},
                {"learning_rate", 0.01},
                {"dropout", dropout},
                {"eval_every", 3},
                {"checkpoint_every", checkpoint_every},
                {"train_examples", 48},
                {"validation_examples", 8},
                {"max_seq_len", 96},
                {"batch_size", 2}}}}}};
  }

  static inline testing::TempDir* dir_ = nullptr;
  static inline fs::path model_;
  fs::path state_;
};

TEST_F(TrainerService, JobsRunInOrderStreamTheirProgressAndPublishVersions) {
  Server server(state_ / "state", state_ / "adapters");
  ASSERT_TRUE(server.connected());
  v1::Job first, second;
  ASSERT_TRUE(submit(server, config(6, 3).dump(), first, /*skip_eval=*/false, "first").ok());
  ASSERT_TRUE(submit(server, config(4, 0).dump(), second).ok());
  EXPECT_EQ(first.state(), v1::JOB_STATE_QUEUED);
  EXPECT_NE(first.id(), second.id());

  // The first job's stream, from its start to its end.
  const std::vector<v1::JobEvent> events = watch(server, first.id());
  std::vector<v1::JobState> states;
  std::vector<int64_t> steps;
  int evaluations = 0, comparisons = 0;
  std::vector<v1::PublishedAdapter> published;
  for (const v1::JobEvent& e : events) {
    EXPECT_EQ(e.job_id(), first.id());
    EXPECT_GT(e.unix_ms(), 0);
    switch (e.event_case()) {
      case v1::JobEvent::kState:
        states.push_back(e.state());
        break;
      case v1::JobEvent::kProgress:
        steps.push_back(e.progress().step());
        EXPECT_EQ(e.progress().adapter(), "describe");
        EXPECT_EQ(e.progress().total_steps(), 6);
        EXPECT_GT(e.progress().loss(), 0);
        EXPECT_GT(e.progress().tokens_per_second(), 0);
        EXPECT_GE(e.progress().eta_seconds(), 0);
        break;
      case v1::JobEvent::kEvaluation:
        ++evaluations;
        EXPECT_GT(e.evaluation().validation_perplexity(), 1);
        break;
      case v1::JobEvent::kComparison:
        ++comparisons;
        EXPECT_EQ(e.comparison().adapter(), "describe");
        EXPECT_GT(e.comparison().base_perplexity(), 1);
        EXPECT_GT(e.comparison().tuned_perplexity(), 1);
        break;
      case v1::JobEvent::kPublished:
        published.push_back(e.published());
        break;
      default:
        break;
    }
  }
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), events[i - 1].sequence() + 1);
  }
  EXPECT_EQ(states, (std::vector<v1::JobState>{v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING,
                                               v1::JOB_STATE_SUCCEEDED}));
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(evaluations, 3);  // the base at step 0, step 3, the end
  EXPECT_EQ(comparisons, 2);  // test and train products
  ASSERT_EQ(published.size(), 1u);
  EXPECT_EQ(published[0].name(), "describe");
  EXPECT_EQ(published[0].version(), 1);

  // The second ran after the first and published the next version.
  watch(server, second.id());
  const v1::Job a = get(server, first.id()), b = get(server, second.id());
  EXPECT_EQ(b.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_GE(b.started_unix_ms(), a.finished_unix_ms());
  ASSERT_EQ(b.published_size(), 1);
  EXPECT_EQ(b.published(0).version(), 2);
  EXPECT_EQ(a.name(), "first");
  EXPECT_EQ(a.progress().step(), 6);
  for (const v1::Job& job : {a, b}) {
    const fs::path path = job.published(0).path();
    EXPECT_EQ(path,
              state_ / "adapters" / "describe" / fmt::format("v{}", job.published(0).version()));
    EXPECT_NO_THROW(models::load_peft_adapter(path));
    EXPECT_EQ(nlohmann::json::parse(read_file(path / "published.json"))["job_id"], job.id());
    EXPECT_EQ(read_file(path / "adapter_model.safetensors"),
              read_file(fs::path(job.run_dir()) / "adapters/describe/adapter_model.safetensors"));
  }
  // Nothing half-made beside them.
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(state_ / "adapters" / "describe")) {
    EXPECT_EQ(e.path().filename().string()[0], 'v') << e.path();
    ++entries;
  }
  EXPECT_EQ(entries, 2u);

  grpc::ClientContext context;
  v1::ListJobsResponse list;
  ASSERT_TRUE(server.stub().ListJobs(&context, v1::ListJobsRequest(), &list).ok());
  ASSERT_EQ(list.jobs_size(), 2);
  EXPECT_EQ(list.jobs(0).id(), first.id());
  EXPECT_EQ(list.jobs(1).id(), second.id());
}

TEST_F(TrainerService, BadConfigsAreRefusedAtSubmissionWithTheReason) {
  Server server(state_ / "state", state_ / "adapters");
  ASSERT_TRUE(server.connected());
  v1::Job job;
  nlohmann::json typo = config(4, 0);
  typo["adapters"]["describe"]["learnig_rate"] = 0.1;
  grpc::Status s = submit(server, typo.dump(), job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("unknown config key 'adapters.describe.learnig_rate'"),
            std::string::npos)
      << s.error_message();

  nlohmann::json no_data = config(4, 0);
  no_data["dataset"] = (state_ / "nowhere").string();
  s = submit(server, no_data.dump(), job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("not a dataset made by `vitrine prepare`"), std::string::npos)
      << s.error_message();

  s = submit(server, "{\"adapters\": ", job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("config_json is not JSON"), std::string::npos);

  nlohmann::json bad_value = config(4, 0);
  bad_value["adapters"]["describe"]["batch_size"] = "eight";
  s = submit(server, bad_value.dump(), job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("adapters.describe.batch_size"), std::string::npos)
      << s.error_message();

  // Nothing was queued; unknown ids are NOT_FOUND.
  grpc::ClientContext context;
  v1::ListJobsResponse list;
  ASSERT_TRUE(server.stub().ListJobs(&context, v1::ListJobsRequest(), &list).ok());
  EXPECT_EQ(list.jobs_size(), 0);
  grpc::ClientContext get_context;
  v1::GetJobRequest request;
  request.set_job_id("job-0-0000");
  EXPECT_EQ(server.stub().GetJob(&get_context, request, &job).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // SIGTERM stops the service cleanly.
  const int status = server.stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST_F(TrainerService, KnobsOutOfRangeAndHostileAdapterNamesAreRefusedAtSubmission) {
  Server server(state_ / "state", state_ / "adapters");
  ASSERT_TRUE(server.connected());
  v1::Job job;
  auto refused = [&](const nlohmann::json& c, const std::string& says, int64_t eval_test = 4) {
    grpc::ClientContext context;
    v1::SubmitJobRequest request;
    request.set_config_json(c.dump());
    request.set_skip_eval(true);
    request.set_eval_test_products(eval_test);
    const grpc::Status s = server.stub().SubmitJob(&context, request, &job);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.dump();
    EXPECT_NE(s.error_message().find(says), std::string::npos) << s.error_message();
  };
  auto with = [&](const std::string& key, const nlohmann::json& value) {
    nlohmann::json c = config(4, 0);
    c["adapters"]["describe"][key] = value;
    return c;
  };
  // 1e999 arrives as JSON text the parser reads as infinity.
  {
    grpc::ClientContext context;
    v1::SubmitJobRequest request;
    std::string text = config(4, 0).dump();
    const std::string rate = "\"learning_rate\":0.01";
    ASSERT_NE(text.find(rate), std::string::npos) << text;
    text.replace(text.find(rate), rate.size(), "\"learning_rate\":1e999");
    request.set_config_json(text);
    const grpc::Status s = server.stub().SubmitJob(&context, request, &job);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << text;
    EXPECT_NE(s.error_message().find("1e999"), std::string::npos) << s.error_message();
  }
  refused(with("max_steps", -1), "adapters.describe.max_steps");
  refused(with("rank", 100000), "adapters.describe.rank");
  refused(with("max_seq_len", 1e9), "adapters.describe.max_seq_len");
  refused(with("batch_size", 2.5), "adapters.describe.batch_size");
  nlohmann::json threads = config(4, 0);
  threads["threads"] = -5;
  refused(threads, "train.threads");
  refused(config(4, 0), "eval_test_products", -1);
  // Adapter names become directories: none may leave adapters_dir.
  for (const std::string name : {"../../evil", "/tmp/owned", "Describe", "-x", "a b", ""}) {
    nlohmann::json c = config(4, 0);
    c["adapters"][name] = c["adapters"]["describe"];
    c["adapters"].erase("describe");
    refused(c, "[a-z0-9][a-z0-9_-]*");
  }
  grpc::ClientContext context;
  v1::ListJobsResponse list;
  ASSERT_TRUE(server.stub().ListJobs(&context, v1::ListJobsRequest(), &list).ok());
  EXPECT_EQ(list.jobs_size(), 0);
  EXPECT_FALSE(fs::exists(state_ / "evil"));
}

TEST_F(TrainerService, QueuedJobsCancelAtOnceAndRunningOnesAfterTheirStep) {
  Server server(state_ / "state", state_ / "adapters");
  ASSERT_TRUE(server.connected());
  v1::Job running, queued, after;
  ASSERT_TRUE(submit(server, config(400, 0).dump(), running).ok());
  ASSERT_TRUE(submit(server, config(4, 0).dump(), queued).ok());
  ASSERT_TRUE(cancel(server, queued.id(), after).ok());
  EXPECT_EQ(after.state(), v1::JOB_STATE_CANCELLED);

  for (int i = 0; i < 600 && get(server, running.id()).progress().step() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE(get(server, running.id()).progress().step(), 2);
  ASSERT_TRUE(cancel(server, running.id(), after).ok());
  const std::vector<v1::JobEvent> events = watch(server, running.id());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().state(), v1::JOB_STATE_CANCELLED);
  const v1::Job ended = get(server, running.id());
  EXPECT_EQ(ended.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_LT(ended.progress().step(), 400);
  EXPECT_EQ(ended.published_size(), 0);
  EXPECT_FALSE(fs::exists(state_ / "adapters" / "describe"));
  // A job that has ended cannot be cancelled again.
  const grpc::Status again = cancel(server, running.id(), after);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(again.error_message().find("has cancelled already"), std::string::npos);
}

TEST_F(TrainerService, TheListPrintsAHostileJobNameEscaped) {
  Server server(state_ / "state", state_ / "adapters");
  ASSERT_TRUE(server.connected());
  // Clears the screen, retitles the window and rings: printed raw, it would.
  const std::string name = "\x1b[2J\x1b]0;owned\x07nightly \xe2\x80\xae";
  v1::Job running, queued, after;
  ASSERT_TRUE(submit(server, config(400, 0).dump(), running).ok());
  ASSERT_TRUE(submit(server, config(4, 0).dump(), queued, true, name).ok());
  const testing::CliRun r = run_vitrine("trainer list --address " + server.address());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find('\x1b'), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find('\x07'), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\\x1b[2J\\x1b]0;owned\\x07nightly \\u202e"), std::string::npos)
      << r.output;
  for (const std::string& id : {queued.id(), running.id()}) cancel(server, id, after);
}

TEST_F(TrainerService, AJobInterruptedByARestartResumesFromItsCheckpoint) {
  // 40 steps with dropout, a checkpoint every 4: SIGKILL the service once
  // the first checkpoint is on disk, start it again, and the job finishes
  // with the adapter an uninterrupted `vitrine train` makes.
  const nlohmann::json job_config = config(40, 4, 0.1);
  v1::Job job;
  {
    Server server(state_ / "state", state_ / "adapters");
    ASSERT_TRUE(server.connected());
    ASSERT_TRUE(submit(server, job_config.dump(), job).ok());
    const fs::path checkpoint =
        fs::path(job.run_dir()) / "checkpoints" / "describe" / "step-4" / "state.json";
    for (int i = 0; i < 6000 && !fs::exists(checkpoint); ++i) usleep(5000);
    const int status = server.stop(SIGKILL);
    ASSERT_TRUE(WIFSIGNALED(status));
    ASSERT_FALSE(fs::exists(state_ / "adapters" / "describe")) << "finished before the kill";
  }
  Server restarted(state_ / "state", state_ / "adapters");
  ASSERT_TRUE(restarted.connected());
  const std::vector<v1::JobEvent> events = watch(restarted, job.id());
  bool resumed = false;
  for (const v1::JobEvent& e : events) {
    resumed |= e.message().find("resuming from the latest checkpoints after a restart") == 0;
  }
  EXPECT_TRUE(resumed);
  const v1::Job done = get(restarted, job.id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.attempts(), 2);
  ASSERT_EQ(done.published_size(), 1);

  testing::write_file(state_ / "direct.json", job_config.dump());
  const testing::CliRun direct =
      run_vitrine(fmt::format("train -q --no-eval --config {} --output {}",
                              (state_ / "direct.json").string(), (state_ / "direct").string()));
  ASSERT_EQ(direct.exit_code, 0) << direct.output;
  EXPECT_EQ(read_file(fs::path(done.published(0).path()) / "adapter_model.safetensors"),
            read_file(state_ / "direct" / "adapters" / "describe" / "adapter_model.safetensors"));
}

}  // namespace
}  // namespace vitrine
