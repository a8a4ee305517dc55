#include "training/service/trainer_service.h"

#include <fmt/format.h>

#include <cctype>
#include <chrono>
#include <nlohmann/json.hpp>
#include <random>
#include <variant>

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
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number no double holds (1e999).
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

// A training event as the job's event: its fields, typed, into the
// proto's. Start and step events also update the job's latest progress.
struct JobEventOf {
  v1::Job& job;
  v1::JobEvent& out;

  void operator()(const training::StartEvent& e) const {
    job.mutable_progress()->Clear();
    job.mutable_progress()->set_adapter(e.adapter);
    job.mutable_progress()->set_total_steps(e.total_steps);
    out.set_message(fmt::format("training adapter '{}': {} steps on {} examples", e.adapter,
                                e.total_steps, e.train_examples));
  }
  void operator()(const training::ResumeEvent& e) const {
    out.set_message(fmt::format("adapter '{}' resumed at step {}", e.adapter, e.step));
  }
  void operator()(const training::StepEvent& e) const {
    v1::Progress& p = *out.mutable_progress();
    p.set_adapter(e.adapter);
    p.set_step(e.step);
    p.set_loss(e.loss);
    p.set_learning_rate(e.learning_rate);
    p.set_tokens_per_second(e.tokens_per_second);
    p.set_eta_seconds(e.eta_seconds);
    if (job.progress().adapter() == e.adapter) p.set_total_steps(job.progress().total_steps());
    *job.mutable_progress() = p;
  }
  void operator()(const training::EvalEvent& e) const {
    v1::Evaluation& v = *out.mutable_evaluation();
    v.set_adapter(e.adapter);
    v.set_step(e.step);
    v.set_validation_loss(e.validation_loss);
    v.set_validation_perplexity(e.validation_perplexity);
  }
  void operator()(const training::DoneEvent& e) const {
    out.set_message(fmt::format("adapter '{}' trained: best validation loss {:.4f} at step {}",
                                e.record.adapter, e.record.best_validation_loss,
                                e.record.best_step));
  }
  void operator()(const training::ClassifierEvent& e) const {
    out.set_message(
        fmt::format("classifier trained: test accuracy {:.4f}", e.report.test_accuracy));
  }
};

v1::JobEvent job_event_of(const training::TrainingEvent& event, v1::Job& job) {
  v1::JobEvent out;
  out.set_job_id(job.id());
  std::visit(JobEventOf{job, out}, event);
  return out;
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

TrainerService::TrainerService(
    TrainerServiceOptions options,
    std::function<training::TitleEvidenceFinder(const std::filesystem::path&)> title_evidence)
    : options_(std::move(options)),
      title_evidence_(std::move(title_evidence)),
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

// Runs the job to its end: train, compare base and tuned (unless the
// request skips it), publish. A stage that fails ends the job FAILED; a
// cancel ends it CANCELLED; a service stopping leaves it RUNNING.
void TrainerService::run(v1::Job job) {
  const bool restarted = job.state() == v1::JOB_STATE_RUNNING;
  job.set_attempts(job.attempts() + 1);
  if (restarted) {
    store_.put(job);
    message(job, fmt::format("resuming from the latest checkpoints after a restart of the "
                             "service (attempt {})",
                             job.attempts()));
  } else {
    set_state(job, v1::JOB_STATE_RUNNING);
  }
  training::TrainOutcome outcome;
  if (!train(job, outcome)) return;
  if (!job.request().skip_eval() && !compare(job)) return;
  if (!publish(job, outcome)) return;
  set_state(job, v1::JOB_STATE_SUCCEEDED);
}

// The job's training run, its events forwarded as the job's; false when
// the job ended here (failed, cancelled, or left RUNNING for the next
// service).
bool TrainerService::train(v1::Job& job, training::TrainOutcome& outcome) {
  training::TrainRunOptions options;
  options.progress = false;
  options.cancel = &cancel_run_;
  options.resume = true;  // a fresh run directory starts from step 0
  options.title_evidence = title_evidence_;
  options.on_event = [&](const training::TrainingEvent& e) {
    v1::JobEvent event = job_event_of(e, job);
    if (std::holds_alternative<training::StepEvent>(e)) store_.put(job);
    emit(std::move(event));
  };
  try {
    training::TrainConfig config = config_of(job.config_json());
    config.output = job.run_dir();
    outcome = training::run_training(config, options);
  } catch (const std::exception& e) {
    fail(job, e.what());
    return false;
  }
  std::lock_guard lock(mutex_);
  const bool stopped = !outcome.adapters.empty() && outcome.adapters.back().cancelled;
  if (stopped && !cancel_requested_) {
    return false;  // the service is stopping: the job stays RUNNING for the next one
  }
  if (stopped || cancel_requested_) {
    set_state(job, v1::JOB_STATE_CANCELLED);
    return false;
  }
  return true;
}

// Base vs tuned on the run's held-out and training products, one event per
// adapter and split; false when the job failed here.
bool TrainerService::compare(v1::Job& job) {
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
    fail(job, fmt::format("evaluation: {}", e.what()));
    return false;
  }
  return true;
}

// Each adapter, then the classifier, as the next version of its name;
// false when the job failed here.
bool TrainerService::publish(v1::Job& job, const training::TrainOutcome& outcome) {
  try {
    for (const training::AdapterOutcome& a : outcome.adapters) {
      publish_version(job, a.name, a.adapter_dir);
    }
    if (outcome.classifier_trained) publish_version(job, "classifier", outcome.classifier_dir);
  } catch (const std::exception& e) {
    fail(job, fmt::format("publishing into '{}': {}", options_.adapters_dir, e.what()));
    return false;
  }
  return true;
}

// Copies `from` into <adapters dir>/<name>/v<N>, N one more than the
// highest version there, with published.json, in one rename.
void TrainerService::publish_version(v1::Job& job, const std::string& name, const fs::path& from) {
  // Submission checked the name; a job stored by an older version was not.
  training::check_adapter_name(name);
  const fs::path root = fs::weakly_canonical(options_.adapters_dir);
  const fs::path dir = root / name;
  if (dir.parent_path() != root) {
    throw std::runtime_error(fmt::format("adapter name '{}' leaves '{}'", name, root.string()));
  }
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
}

void TrainerService::message(const v1::Job& job, const std::string& text) {
  v1::JobEvent event;
  event.set_job_id(job.id());
  event.set_message(text);
  emit(std::move(event));
}

void TrainerService::fail(v1::Job& job, const std::string& why) {
  job.set_error(why);
  message(job, "failed: " + why);
  set_state(job, v1::JOB_STATE_FAILED);
}

grpc::Status TrainerService::SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest* request,
                                       v1::Job* job) {
  return rpc::guarded([&] {
    training::TrainConfig config = config_of(request->config_json());
    if (request->eval_test_products() < 0 || request->eval_test_products() > 100000) {
      throw std::invalid_argument(
          fmt::format("eval_test_products: {} is not in 0..100000", request->eval_test_products()));
    }
    if (request->name().size() > 200) {
      throw std::invalid_argument(
          fmt::format("name: {} bytes, more than the limit of 200", request->name().size()));
    }
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
