// vitrine.v1.TrainerService: training runs as jobs in a queue.
//
// Jobs run one at a time on a worker thread, in the order they were
// submitted, each with `run_training` in <state dir>/runs/<job id>/ (then
// `evaluate_run` unless skipped). Their state and every event are kept in
// <state dir>/jobs.sqlite, so a service restarted after a crash or a
// SIGKILL finds the job that was running and resumes it from its latest
// checkpoint. A finished job's adapters (and classifier) are copied into
// the adapters directory as <name>/v<N>, N one more than the highest
// version there, built under a temporary name and renamed into place, so
// the daemon never sees half an adapter. A run's progress reaches the job
// as typed training events (training/training_event.h), copied field by
// field into the job's events; metrics.jsonl is never read back.
//
// Not goals: several jobs at once (one machine's cores go to one run),
// priorities, authentication (the daemon and gateway carry the tokens;
// the trainer service listens on a private address).
#pragma once

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "training/classifier_training.h"
#include "training/service/job_store.h"
#include "vitrine/v1/trainer.grpc.pb.h"

namespace vitrine::training {
struct TrainOutcome;
}

namespace vitrine::trainer {

// What configs/trainer.yaml sets (a test keeps the file and these equal).
struct TrainerServiceOptions {
  std::string listen = "127.0.0.1:50062";     // where `vitrine trainer serve` listens
  std::string state_dir = "out/trainer";      // jobs.sqlite and runs/<job id>/
  std::string adapters_dir = "out/adapters";  // published <name>/v<N>
  int64_t max_queued = 64;  // jobs waiting at most; more are refused (RESOURCE_EXHAUSTED)
};

// "queued", "running", "succeeded", "failed", "cancelled" ("unspecified").
std::string job_state_word(v1::JobState state);

// Reads a config JSON (from YAML) over `options`; unknown keys and wrong
// types throw std::invalid_argument naming the key.
void apply_trainer_service_config(const nlohmann::json& json, TrainerServiceOptions& options);
nlohmann::ordered_json trainer_service_config_to_json(const TrainerServiceOptions& options);

class TrainerService final : public v1::TrainerService::Service {
 public:
  // Opens the store and starts the worker, which first resumes a job left
  // running by a previous process.
  // `title_evidence`: the router classifier's catalogue lookup for a job's
  // dataset (TrainRunOptions::title_evidence); empty: text alone.
  explicit TrainerService(TrainerServiceOptions options,
                          std::function<training::TitleEvidenceFinder(const std::filesystem::path&)>
                              title_evidence = {});
  ~TrainerService() override;

  // Stops the worker: a running job stops after its current step and stays
  // RUNNING in the store, to be resumed by the next service. Idempotent.
  void shutdown();

  grpc::Status SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest* request,
                         v1::Job* job) override;
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override;
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest* request,
                      v1::Job* job) override;
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext*, const v1::CancelJobRequest* request,
                         v1::Job* job) override;

 private:
  void work();
  // run()'s stages: train, compare base and tuned, publish.
  void run(v1::Job job);
  bool train(v1::Job& job, training::TrainOutcome& outcome);
  bool compare(v1::Job& job);
  bool publish(v1::Job& job, const training::TrainOutcome& outcome);
  void publish_version(v1::Job& job, const std::string& name, const std::filesystem::path& from);
  void message(const v1::Job& job, const std::string& text);
  void fail(v1::Job& job, const std::string& why);
  void set_state(v1::Job& job, v1::JobState state);
  void emit(v1::JobEvent event);
  v1::Job must_get(const std::string& id);

  TrainerServiceOptions options_;
  std::function<training::TitleEvidenceFinder(const std::filesystem::path&)> title_evidence_;
  JobStore store_;
  std::mutex mutex_;
  std::condition_variable changed_;  // a job was queued or an event was appended
  bool stopping_ = false;
  std::string running_id_;               // the job the worker runs, if any
  std::atomic<bool> cancel_run_{false};  // stop the running job after its step
  bool cancel_requested_ = false;        // ... because a user cancelled it
  std::thread worker_;
};

}  // namespace vitrine::trainer
