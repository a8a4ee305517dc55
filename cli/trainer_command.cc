// `vitrine trainer`: the trainer service and its clients.
//
//   vitrine trainer serve [--config configs/trainer.yaml] [--listen ADDR]
//   vitrine trainer submit --config configs/train.yaml [--watch]
//   vitrine trainer watch|get|cancel JOB_ID
//   vitrine trainer list
//
// The clients talk gRPC to --address (default: the service's default
// listen address). submit reads the YAML here and sends JSON, so the
// service never parses YAML.
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "common/net.h"
#include "common/utf8.h"
#include "common/yaml_json.h"
#include "protos/server_services.h"
#include "training/service/trainer_service.h"
#include "vitrine/v1/trainer.grpc.pb.h"

namespace vitrine::cli {
namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
  g_stop.store(true);
}

struct TrainerArgs {
  std::string config;  // serve: configs/trainer.yaml; submit: a train config
  std::string listen;
  std::string state_dir;
  std::string adapters_dir;
  std::string address = trainer::TrainerServiceOptions{}.listen;
  std::string job_id;
  std::string name;
  bool watch = false;
  bool print_config = false;
  bool skip_eval = false;
  int64_t eval_test_products = 0;
};

int serve(const TrainerArgs& args) {
  trainer::TrainerServiceOptions options;
  if (!args.config.empty()) {
    trainer::apply_trainer_service_config(load_yaml_as_json(args.config), options);
  }
  if (!args.listen.empty()) options.listen = args.listen;
  if (!args.state_dir.empty()) options.state_dir = args.state_dir;
  if (!args.adapters_dir.empty()) options.adapters_dir = args.adapters_dir;
  if (args.print_config) {
    std::puts(trainer::trainer_service_config_to_json(options).dump(2).c_str());
    return 0;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  trainer::TrainerService service(options, catalogue_title_evidence);
  grpc::ServerBuilder builder;
  rpc::add_health_and_reflection(builder);
  int port = 0;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);  // a taken port fails, not shares
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    const std::string why = listen_problem(options.listen);
    throw std::runtime_error(
        fmt::format("cannot listen on '{}'{}{}", options.listen, why.empty() ? "" : ": ", why));
  }
  std::fprintf(stderr, "vitrine trainer: listening on %s (port %d); jobs in %s, adapters in %s\n",
               options.listen.c_str(), port, options.state_dir.c_str(),
               options.adapters_dir.c_str());
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::fprintf(stderr, "vitrine trainer: stopping (a running job resumes at the next start)\n");
  service.shutdown();  // watchers see UNAVAILABLE, the worker stops after its step
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}

std::unique_ptr<v1::TrainerService::Stub> connect(const std::string& address) {
  return v1::TrainerService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

void check(const grpc::Status& status, const std::string& address) {
  if (status.ok()) return;
  throw std::runtime_error(
      status.error_code() == grpc::StatusCode::UNAVAILABLE
          ? fmt::format("no trainer service at {}: {}", address, status.error_message())
          : status.error_message());
}

void print_job(const v1::Job& job) {
  std::printf("%s  %-9s  %s", job.id().c_str(), trainer::job_state_word(job.state()).c_str(),
              job.name().empty() ? "-" : utf8::printable(job.name()).c_str());
  if (job.state() == v1::JOB_STATE_RUNNING && !job.progress().adapter().empty()) {
    const v1::Progress& p = job.progress();
    std::printf("  %s step %ld/%ld loss %.4f", utf8::printable(p.adapter()).c_str(),
                static_cast<long>(p.step()), static_cast<long>(p.total_steps()), p.loss());
  }
  for (const auto& a : job.published()) {
    std::printf("  %s/v%ld", utf8::printable(a.name()).c_str(), static_cast<long>(a.version()));
  }
  if (!job.error().empty()) std::printf("  error: %s", utf8::printable(job.error()).c_str());
  std::printf("\n");
}

void print_event(const v1::JobEvent& e) {
  switch (e.event_case()) {
    case v1::JobEvent::kState:
      std::printf("state: %s\n", trainer::job_state_word(e.state()).c_str());
      break;
    case v1::JobEvent::kProgress: {
      const v1::Progress& p = e.progress();
      std::printf("%s step %ld: loss %.4f, lr %.2e, %.0f tokens/s, eta %.0f s\n",
                  utf8::printable(p.adapter()).c_str(), static_cast<long>(p.step()), p.loss(),
                  p.learning_rate(), p.tokens_per_second(), p.eta_seconds());
      break;
    }
    case v1::JobEvent::kEvaluation: {
      const v1::Evaluation& v = e.evaluation();
      std::printf("%s step %ld: validation loss %.4f (perplexity %.2f)\n",
                  utf8::printable(v.adapter()).c_str(), static_cast<long>(v.step()),
                  v.validation_loss(), v.validation_perplexity());
      break;
    }
    case v1::JobEvent::kComparison: {
      const v1::Comparison& c = e.comparison();
      std::printf("%s %s (%ld products): ROUGE-L %.4f -> %.4f, BLEU %.2f -> %.2f\n",
                  utf8::printable(c.adapter()).c_str(), utf8::printable(c.split()).c_str(),
                  static_cast<long>(c.products()), c.base_rouge_l(), c.tuned_rouge_l(),
                  c.base_bleu(), c.tuned_bleu());
      break;
    }
    case v1::JobEvent::kPublished:
      std::printf("published %s/v%ld at %s\n", utf8::printable(e.published().name()).c_str(),
                  static_cast<long>(e.published().version()),
                  utf8::printable(e.published().path()).c_str());
      break;
    case v1::JobEvent::kMessage:
      std::printf("%s\n", utf8::printable(e.message()).c_str());
      break;
    default:
      break;
  }
  std::fflush(stdout);
}

// Streams the job's events; the exit code says how it ended.
int watch(v1::TrainerService::Stub& stub, const TrainerArgs& args, const std::string& id) {
  grpc::ClientContext context;
  v1::WatchJobRequest request;
  request.set_job_id(id);
  auto reader = stub.WatchJob(&context, request);
  v1::JobEvent event;
  v1::JobState last = v1::JOB_STATE_UNSPECIFIED;
  while (reader->Read(&event)) {
    print_event(event);
    if (event.event_case() == v1::JobEvent::kState) last = event.state();
  }
  check(reader->Finish(), args.address);
  return last == v1::JOB_STATE_SUCCEEDED ? 0 : 1;
}

int run_client(const std::string& verb, const TrainerArgs& args) {
  auto stub = connect(args.address);
  grpc::ClientContext context;
  v1::Job job;
  if (verb == "submit") {
    v1::SubmitJobRequest request;
    request.set_config_json(load_yaml_as_json(args.config).dump());
    request.set_name(args.name);
    request.set_skip_eval(args.skip_eval);
    request.set_eval_test_products(args.eval_test_products);
    check(stub->SubmitJob(&context, request, &job), args.address);
    std::printf("submitted %s\n", job.id().c_str());
    std::fflush(stdout);
    return args.watch ? watch(*stub, args, job.id()) : 0;
  }
  if (verb == "watch") return watch(*stub, args, args.job_id);
  if (verb == "list") {
    v1::ListJobsResponse response;
    check(stub->ListJobs(&context, v1::ListJobsRequest(), &response), args.address);
    for (const v1::Job& j : response.jobs()) print_job(j);
    return 0;
  }
  if (verb == "get") {
    v1::GetJobRequest request;
    request.set_job_id(args.job_id);
    check(stub->GetJob(&context, request, &job), args.address);
  } else {
    v1::CancelJobRequest request;
    request.set_job_id(args.job_id);
    check(stub->CancelJob(&context, request, &job), args.address);
  }
  print_job(job);
  return 0;
}

}  // namespace

Command add_trainer_command(CLI::App& app) {
  auto args = std::make_shared<TrainerArgs>();
  CLI::App* cmd = app.add_subcommand("trainer", "The trainer service: training jobs over gRPC");
  cmd->require_subcommand(1);
  CLI::App* serve_cmd = cmd->add_subcommand("serve", "Run the TrainerService");
  serve_cmd->add_option("--config,-c", args->config, "service config (configs/trainer.yaml)")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--listen", args->listen, "address to listen on (overrides the config)");
  serve_cmd->add_option("--state-dir", args->state_dir, "jobs.sqlite and runs (overrides)");
  serve_cmd->add_option("--adapters-dir", args->adapters_dir, "published adapters (overrides)");
  serve_cmd->add_flag("--print-config", args->print_config,
                      "print the resolved configuration as JSON and exit");

  std::vector<std::pair<std::string, CLI::App*>> clients;
  CLI::App* submit = cmd->add_subcommand("submit", "Queue a training run");
  submit->add_option("--config,-c", args->config, "training config (as configs/train.yaml)")
      ->required()
      ->check(CLI::ExistingFile);
  submit->add_option("--name", args->name, "a label for the job");
  submit->add_flag("--watch,-w", args->watch, "follow the job until it ends");
  submit->add_flag("--skip-eval", args->skip_eval, "no base-vs-tuned evaluation after training");
  submit->add_option("--eval-test", args->eval_test_products, "held-out products per task");
  clients.emplace_back("submit", submit);
  for (const char* verb : {"watch", "get", "cancel"}) {
    CLI::App* c = cmd->add_subcommand(verb, fmt::format("{} a job", verb));
    c->add_option("job", args->job_id, "job id")->required();
    clients.emplace_back(verb, c);
  }
  clients.emplace_back("list", cmd->add_subcommand("list", "List the jobs, oldest first"));
  for (auto& [verb, c] : clients) {
    c->add_option("--address,-a", args->address, "the trainer service's address");
  }

  return Command{cmd, [args, serve_cmd, clients] {
                   try {
                     if (serve_cmd->parsed()) return serve(*args);
                     for (const auto& [verb, c] : clients) {
                       if (c->parsed()) return run_client(verb, *args);
                     }
                     return 2;
                   } catch (const std::exception& e) {
                     std::fprintf(stderr, "vitrine trainer: error: %s\n", e.what());
                     return 1;
                   }
                 }};
}

}  // namespace vitrine::cli
