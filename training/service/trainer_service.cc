#include "training/service/trainer_service.h"

#include <fmt/format.h>

#include <cctype>
#include <chrono>
#include <nlohmann/json.hpp>
#include <random>

#include "common/atomic_output.h"
#include "common/clock.h"
#include "common/config_binder.h"
#include "common/errors.h"
#include "common/versions.h"
#include "protos/status.h"
#include "training/evaluation.h"
#include "training/train_config.h"
#include "training/train_run.h"

namespace vitrine::trainer {
namespace fs = std::filesystem;
namespace {

using Json = nlohmann::ordered_json;

bool terminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

// A training config from the request's JSON over the built-in defaults,
// with its files checked now rather than when the job reaches the front
// of the queue.
training::TrainConfig config_of(const std::string& text) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text.empty() ? "{}" : text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument(fmt::format("config_json is not JSON: {}", e.what()));
  }
  if (!json.is_object()) throw std::invalid_argument("config_json: expected a JSON object");
  training::TrainConfig config = training::default_train_config();
  training::apply_train_config(json, config);
  if (!fs::exists(fs::path(config.base_model) / "config.json")) {
    throw std::invalid_argument(fmt::format(
        "base_model '{}': not a Hugging Face model directory (no config.json) on the trainer's "
        "machine",
        config.base_model));
  }
  if (!fs::exists(fs::path(config.dataset) / "stats.json")) {
    throw std::invalid_argument(
        fmt::format("dataset '{}': not a dataset made by `vitrine prepare` (no stats.json) on "
                    "the trainer's machine",
                    config.dataset));
  }
  if (config.adapters.empty()) throw std::invalid_argument("adapters: nothing to train");
  return config;
}

std::string new_job_id() {
  static std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("job-{}-{:04x}", unix_ms(), rng() & 0xffff);
}

void bind(ConfigBinder& b, TrainerServiceOptions& o) {
  b.field("listen", o.listen)
      .field("state_dir", o.state_dir)
      .field("adapters_dir", o.adapters_dir)
      .field("max_queued", o.max_queued);
}

}  // namespace

std::string job_state_word(v1::JobState state) {
  std::string word = v1::JobState_Name(state);  // JOB_STATE_SUCCEEDED
  word = word.substr(word.rfind('_') + 1);
  for (char& c : word) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return word;
}

void apply_trainer_service_config(const nlohmann::json& json, TrainerServiceOptions& options) {
  ConfigBinder b(&json, "trainer");
  bind(b, options);
  b.finish_reading();
  if (options.max_queued < 1) throw std::invalid_argument("trainer.max_queued: expected >= 1");
}

nlohmann::ordered_json trainer_service_config_to_json(const TrainerServiceOptions& options) {
  TrainerServiceOptions copy = options;
  ConfigBinder b(nullptr, "trainer");
  bind(b, copy);
  return b.take();
}

TrainerService::TrainerService(TrainerServiceOptions options)
    : options_(std::move(options)),
      store_((fs::create_directories(options_.state_dir),
              fs::path(options_.state_dir) / "jobs.sqlite")) {
  fs::create_directories(options_.adapters_dir);
  worker_ = std::thread([this] { work(); });
}

TrainerService::~TrainerService() {
  shutdown();
}

void TrainerService::shutdown() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    cancel_run_ = true;
  }
  changed_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void TrainerService::emit(v1::JobEvent event) {
  event.set_unix_ms(unix_ms());
  store_.append_event(std::move(event));
  changed_.notify_all();
}

void TrainerService::set_state(v1::Job& job, v1::JobState state) {
  job.set_state(state);
  if (state == v1::JOB_STATE_RUNNING && job.started_unix_ms() == 0) {
    job.set_started_unix_ms(unix_ms());
  }
  if (terminal(state)) job.set_finished_unix_ms(unix_ms());
  store_.put(job);
  v1::JobEvent event;
  event.set_job_id(job.id());
  event.set_state(state);
  emit(std::move(event));
}

v1::Job TrainerService::must_get(const std::string& id) {
  std::optional<v1::Job> job = store_.get(id);
  if (!job) throw NotFoundError(fmt::format("no job '{}'", id));
  return *job;
}

void TrainerService::work() {
  for (;;) {
    v1::Job next;
    {
      std::unique_lock lock(mutex_);
      // A job left running by a previous service first, then the oldest queued.
      auto find_next = [&] {
        std::optional<v1::Job> queued;
        for (const v1::Job& job : store_.list()) {
          if (job.state() == v1::JOB_STATE_RUNNING) {
            next = job;
            return true;
          }
          if (job.state() == v1::JOB_STATE_QUEUED && !queued) queued = job;
        }
        if (queued) next = *queued;
        return queued.has_value();
      };
      changed_.wait(lock, [&] { return stopping_ || find_next(); });
      if (stopping_) return;
      running_id_ = next.id();
      cancel_run_ = false;
      cancel_requested_ = false;
    }
    run(std::move(next));
    std::lock_guard lock(mutex_);
    running_id_.clear();
  }
}

void TrainerService::run(v1::Job job) {
  const bool restarted = job.state() == v1::JOB_STATE_RUNNING;
  job.set_attempts(job.attempts() + 1);
  auto message = [&](const std::string& text) {
    v1::JobEvent event;
    event.set_job_id(job.id());
    event.set_message(text);
    emit(std::move(event));
  };
  if (restarted) {
    store_.put(job);
    message(
        fmt::format("resuming from the latest checkpoints after a restart of the service "
                    "(attempt {})",
                    job.attempts()));
  } else {
    set_state(job, v1::JOB_STATE_RUNNING);
  }
  auto fail = [&](const std::string& why) {
    job.set_error(why);
    message("failed: " + why);
    set_state(job, v1::JOB_STATE_FAILED);
  };

  training::TrainRunOptions options;
  options.progress = false;
  options.cancel = &cancel_run_;
  options.resume = true;  // a fresh run directory starts from step 0
  options.on_event = [&](const Json& j) {
    v1::JobEvent event;
    event.set_job_id(job.id());
    const std::string kind = j.value("event", "");
    if (kind == "step") {
      v1::Progress& p = *event.mutable_progress();
      p.set_adapter(j["adapter"]);
      p.set_step(j["step"]);
      p.set_loss(j["loss"]);
      p.set_learning_rate(j["learning_rate"]);
      p.set_tokens_per_second(j["tokens_per_second"]);
      p.set_eta_seconds(j["eta_seconds"]);
      const std::string adapter = p.adapter();
      if (job.progress().adapter() == adapter) p.set_total_steps(job.progress().total_steps());
      *job.mutable_progress() = p;
      store_.put(job);
    } else if (kind == "eval") {
      v1::Evaluation& e = *event.mutable_evaluation();
      e.set_adapter(j["adapter"]);
      e.set_step(j["step"]);
      e.set_validation_loss(j["validation_loss"]);
      e.set_validation_perplexity(j["validation_perplexity"]);
    } else if (kind == "start") {
      job.mutable_progress()->Clear();
      job.mutable_progress()->set_adapter(j["adapter"]);
      job.mutable_progress()->set_total_steps(j["total_steps"]);
      event.set_message(fmt::format(
          "training adapter '{}': {} steps on {} examples", j["adapter"].get<std::string>(),
          j["total_steps"].get<int64_t>(), j["train_examples"].get<int64_t>()));
    } else if (kind == "resume") {
      event.set_message(fmt::format("adapter '{}' resumed at step {}",
                                    j["adapter"].get<std::string>(), j["step"].get<int64_t>()));
    } else if (kind == "done") {
      event.set_message(fmt::format("adapter '{}' trained: best validation loss {:.4f} at step {}",
                                    j["adapter"].get<std::string>(),
                                    j["record"]["best_validation_loss"].get<double>(),
                                    j["record"]["best_step"].get<int64_t>()));
    } else if (kind == "classifier") {
      event.set_message(fmt::format("classifier trained: test accuracy {:.4f}",
                                    j["test_accuracy"].get<double>()));
    } else {
      return;
    }
    emit(std::move(event));
  };

  training::TrainOutcome outcome;
  try {
    training::TrainConfig config = config_of(job.config_json());
    config.output = job.run_dir();
    outcome = training::run_training(config, options);
  } catch (const std::exception& e) {
    fail(e.what());
    return;
  }
  {
    std::lock_guard lock(mutex_);
    const bool stopped = !outcome.adapters.empty() && outcome.adapters.back().cancelled;
    if (stopped && !cancel_requested_) {
      return;  // the service is stopping: the job stays RUNNING for the next one
    }
    if (stopped || cancel_requested_) {
      set_state(job, v1::JOB_STATE_CANCELLED);
      return;
    }
  }
  if (!job.request().skip_eval()) {
    try {
      training::EvalOptions eval;
      eval.progress = false;
      if (job.request().eval_test_products() > 0) {
        eval.test_examples = job.request().eval_test_products();
      }
      for (const training::SplitResult& r : training::evaluate_run(job.run_dir(), eval)) {
        v1::JobEvent event;
        event.set_job_id(job.id());
        v1::Comparison& c = *event.mutable_comparison();
        c.set_adapter(r.adapter);
        c.set_split(r.split);
        c.set_products(r.examples);
        c.set_base_rouge_l(r.base.rougeL);
        c.set_tuned_rouge_l(r.tuned.rougeL);
        c.set_base_bleu(r.base.bleu);
        c.set_tuned_bleu(r.tuned.bleu);
        c.set_base_perplexity(r.base.perplexity);
        c.set_tuned_perplexity(r.tuned.perplexity);
        emit(std::move(event));
      }
    } catch (const std::exception& e) {
      fail(fmt::format("evaluation: {}", e.what()));
      return;
    }
  }

  // Publish each artefact as the next version of its name.
  auto publish = [&](const std::string& name, const fs::path& from) {
    const fs::path dir = fs::path(options_.adapters_dir) / name;
    fs::create_directories(dir);
    const auto versions = versions_in(dir);
    const int64_t version = (versions.empty() ? 0 : versions.back().first) + 1;
    StagingDir staging(dir / fmt::format("v{}", version));
    fs::copy(from, staging.path(), fs::copy_options::recursive);
    const Json record = {{"name", name},
                         {"version", version},
                         {"job_id", job.id()},
                         {"run_dir", job.run_dir()},
                         {"published_unix_ms", unix_ms()}};
    write_file_atomic(staging.path() / "published.json", record.dump(2) + "\n");
    staging.commit();
    v1::PublishedAdapter published;
    published.set_name(name);
    published.set_version(version);
    published.set_path(staging.target().string());
    *job.add_published() = published;
    store_.put(job);
    v1::JobEvent event;
    event.set_job_id(job.id());
    *event.mutable_published() = published;
    emit(std::move(event));
  };
  try {
    for (const training::AdapterOutcome& a : outcome.adapters) publish(a.name, a.adapter_dir);
    if (outcome.classifier_trained) publish("classifier", outcome.classifier_dir);
  } catch (const std::exception& e) {
    fail(fmt::format("publishing into '{}': {}", options_.adapters_dir, e.what()));
    return;
  }
  set_state(job, v1::JOB_STATE_SUCCEEDED);
}

grpc::Status TrainerService::SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest* request,
                                       v1::Job* job) {
  return rpc::guarded([&] {
    training::TrainConfig config = config_of(request->config_json());
    std::lock_guard lock(mutex_);
    if (stopping_) throw FailedPreconditionError("the trainer service is shutting down");
    int64_t queued = 0;
    for (const v1::Job& j : store_.list()) queued += j.state() == v1::JOB_STATE_QUEUED;
    if (queued >= options_.max_queued) {
      throw ResourceExhaustedError(
          fmt::format("{} jobs are queued already (max_queued); try again later", queued));
    }
    job->set_id(new_job_id());
    job->set_name(request->name());
    job->set_created_unix_ms(unix_ms());
    job->set_run_dir(fs::absolute(fs::path(options_.state_dir) / "runs" / job->id()).string());
    config.output = job->run_dir();
    job->set_config_json(training::train_config_to_json(config).dump());
    *job->mutable_request() = *request;
    set_state(*job, v1::JOB_STATE_QUEUED);
  });
}

grpc::Status TrainerService::WatchJob(grpc::ServerContext* context,
                                      const v1::WatchJobRequest* request,
                                      grpc::ServerWriter<v1::JobEvent>* writer) {
  return rpc::guarded([&]() -> grpc::Status {
    must_get(request->job_id());
    int64_t sent = 0;
    for (;;) {
      // The state first, then the events: a job read as ended has all its
      // events stored already.
      const bool ended = terminal(must_get(request->job_id()).state());
      for (const v1::JobEvent& event : store_.events(request->job_id(), sent)) {
        if (!writer->Write(event)) return {grpc::StatusCode::CANCELLED, "the watcher went away"};
        sent = event.sequence();
      }
      if (ended) return grpc::Status::OK;
      if (context->IsCancelled()) return {grpc::StatusCode::CANCELLED, "the watcher went away"};
      std::unique_lock lock(mutex_);
      if (stopping_) {
        return {grpc::StatusCode::UNAVAILABLE,
                "the trainer service is stopping; the job resumes when it restarts"};
      }
      changed_.wait_for(lock, std::chrono::milliseconds(250));
    }
  });
}

grpc::Status TrainerService::GetJob(grpc::ServerContext*, const v1::GetJobRequest* request,
                                    v1::Job* job) {
  return rpc::guarded([&] { *job = must_get(request->job_id()); });
}

grpc::Status TrainerService::ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*,
                                      v1::ListJobsResponse* response) {
  return rpc::guarded([&] {
    for (v1::Job& job : store_.list()) *response->add_jobs() = std::move(job);
  });
}

grpc::Status TrainerService::CancelJob(grpc::ServerContext*, const v1::CancelJobRequest* request,
                                       v1::Job* job) {
  return rpc::guarded([&] {
    std::lock_guard lock(mutex_);
    *job = must_get(request->job_id());
    if (terminal(job->state())) {
      throw FailedPreconditionError(
          fmt::format("job '{}' has {} already", job->id(), job_state_word(job->state())));
    }
    if (job->state() == v1::JOB_STATE_QUEUED) {
      set_state(*job, v1::JOB_STATE_CANCELLED);
    } else if (job->id() == running_id_) {
      cancel_requested_ = true;
      cancel_run_ = true;
      v1::JobEvent event;
      event.set_job_id(job->id());
      event.set_message("cancel requested: stopping after the current step");
      emit(std::move(event));
    }
  });
}

}  // namespace vitrine::trainer
