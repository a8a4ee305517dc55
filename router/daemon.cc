#include "router/daemon.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "catalog/catalog.h"
#include "common/net.h"
#include "common/text_file.h"
#include "models/runtime.h"
#include "models/text_classifier.h"
#include "protos/server_services.h"
#include "router/chat_service.h"
#include "router/metrics_server.h"

namespace vitrine::router {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string read_pem(const std::string& path, const char* key) {
  const std::string what = fmt::format("tls.{}", key);
  std::string pem = read_whole_file(path, what);
  if (pem.find("-----BEGIN") == std::string::npos) {
    throw std::runtime_error(fmt::format("{}: '{}' is not a PEM file", what, path));
  }
  return pem;
}

// Throws naming both files unless `key_pem` holds the private key of the
// certificate in `cert_pem` (gRPC would only fail to listen).
void check_key_pair(const TlsConfig& tls, const std::string& key_pem, const std::string& cert_pem) {
  using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;
  Bio cert_bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())), BIO_free);
  Bio key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr), X509_free);
  if (cert == nullptr) {
    throw std::runtime_error(fmt::format("tls.cert: '{}' holds no certificate", tls.cert));
  }
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (key == nullptr) {
    throw std::runtime_error(
        fmt::format("tls.key: '{}' holds no private key (or one with a passphrase)", tls.key));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    throw std::runtime_error(fmt::format(
        "tls.key '{}' is not the private key of tls.cert '{}': the two files come from different "
        "key pairs",
        tls.key, tls.cert));
  }
}

std::shared_ptr<grpc::ServerCredentials> credentials(const TlsConfig& tls) {
  if (tls.cert.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      tls.client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  const std::string key = read_pem(tls.key, "key"), cert = read_pem(tls.cert, "cert");
  check_key_pair(tls, key, cert);
  options.pem_key_cert_pairs.push_back({key, cert});
  if (!tls.client_ca.empty()) options.pem_root_certs = read_pem(tls.client_ca, "client_ca");
  return grpc::SslServerCredentials(options);
}

void must_exist(const std::string& path, const char* key) {
  if (!fs::exists(path)) {
    throw std::runtime_error(fmt::format("{}: '{}' does not exist", key, path));
  }
}

// The model, its engine and the adapters.
void load_model(const RouterConfig& c, AnswererParts& parts,
                const std::function<void(const std::string&)>& log) {
  models::LlamaForCausalLM model = models::load_llama(
      c.model, c.device, models::WeightLayout::kPacked, models::parse_base_dtype(c.weights),
      models::loading_bar(fmt::format("vitrined: loading {}", c.model)));
  log(fmt::format("base weights: {}", models::base_dtype_name(models::weights_of(model))));
  parts.tokenizer = std::shared_ptr<const models::Tokenizer>(models::load_tokenizer(c.model));
  parts.family = models::detect_chat_family(c.model);
  parts.engine = std::make_shared<models::Engine>(model, parts.tokenizer, c.engine);
  parts.registry = std::make_shared<AdapterRegistry>(*parts.engine, c.adapters_dir, c.adapters);
  const AdapterRegistry::ReloadResult loaded = parts.registry->reload();
  for (const LoadedAdapter& a : loaded.loaded) {
    log(fmt::format("adapter {} v{} from {} in slot {} ({} prompts, grounding {})", a.name,
                    a.version, a.path.string(), a.slot, prompts::task_name(a.prompt_format.task),
                    prompts::grounding_name(a.prompt_format.qa.grounding)));
  }
  for (const std::string& e : loaded.errors) log("adapter not loaded: " + e);
  for (const std::string& name : c.adapters) {
    if (parts.registry->current(name) != nullptr) continue;
    const bool answers = name == "describe" || name == c.answerer.qa_adapter;
    log(fmt::format("no '{}' adapter in {} yet{}", name, c.adapters_dir,
                    answers ? ": the base model answers its route until one is published"
                            : " (it answers no route while qa_adapter names another)"));
  }
}

// Loads everything the service answers with.
ServingParts load_parts(const RouterConfig& c, const nlohmann::json& experiments,
                        const std::function<void(const std::string&)>& log) {
  must_exist(c.model, "model");
  must_exist(c.classifier, "classifier");
  must_exist(c.catalog, "catalog");
  ServingParts parts;
  AnswererParts& a = parts.answerer;
  const Clock::time_point start = Clock::now();
  load_model(c, a, log);
  const auto catalog = std::make_shared<const catalog::Catalog>(c.catalog);
  a.classifier = std::make_shared<const agents::ClassifierAgent>(
      models::load_text_classifier(c.classifier), catalog, c.routing.classifier);
  a.describe = std::make_shared<const agents::DescribeAgent>(catalog, c.routing.describe);
  a.qa = std::make_shared<const agents::QaAgent>(catalog, c.routing.qa);
  a.unknown = std::make_shared<const agents::UnknownProductAgent>(catalog, c.routing.unknown);
  if (!experiments.is_null()) {
    a.experiments = std::make_shared<const Experiments>(parse_experiments_config(experiments));
  }
  if (!c.response_log.empty()) {
    const fs::path path(c.response_log);
    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    parts.log = std::make_shared<ResponseLog>(path);
  }
  log(fmt::format("loaded {} ({} catalogue products) in {:.1f} s", c.model, catalog->size(),
                  std::chrono::duration<double>(Clock::now() - start).count()));
  return parts;
}

using Log = std::function<void(const std::string&)>;

// Prometheus text on metrics_listen (nothing when it is empty).
std::unique_ptr<MetricsHttpServer> start_metrics(MetricsRegistry& metrics,
                                                 const RouterConfig& config, const Log& log) {
  add_process_metrics(metrics);
  if (config.metrics_listen.empty()) return nullptr;
  auto server = std::make_unique<MetricsHttpServer>(metrics, config.metrics_listen);
  server->start();
  log(fmt::format("metrics on http://{}/metrics", config.metrics_listen));
  return server;
}

void set_health(grpc::Server& server, bool serving) {
  grpc::HealthCheckServiceInterface* health = server.GetHealthCheckService();
  health->SetServingStatus(serving);
  health->SetServingStatus("vitrine.v1.ChatService", serving);
}

// The gRPC server with `service`, listening, health NOT_SERVING.
std::unique_ptr<grpc::Server> start_server(const RouterConfig& config, ChatService& service,
                                           const Log& log) {
  grpc::ServerBuilder builder;
  rpc::add_health_and_reflection(builder);
  int port = 0;
  builder.AddListeningPort(config.listen, credentials(config.tls), &port);
  // A second daemon on a taken port must fail, not share it (SO_REUSEPORT).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(&service);
  // Each request in flight holds a thread while it waits for the engine:
  // enough for the whole queue and batch, and a few for the quick calls.
  grpc::ResourceQuota quota("vitrined");
  quota.SetMaxThreads(config.engine.max_queue + config.engine.max_batch + 16);
  builder.SetResourceQuota(quota);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    const std::string why = listen_problem(config.listen);
    throw std::runtime_error(
        fmt::format("cannot listen on '{}'{}{}", config.listen, why.empty() ? "" : ": ", why));
  }
  set_health(*server, false);
  log(fmt::format("listening on {}{} (not serving until loaded)", config.listen,
                  config.tls.cert.empty() ? "" : " with TLS"));
  return server;
}

// Until `stop`: detaches replaced adapter versions nobody holds, and looks
// for new ones every reload_seconds.
void poll_adapters(AdapterRegistry& registry, const RouterConfig& config,
                   const std::atomic<bool>& stop, const Log& log) {
  Clock::time_point next_reload = Clock::now() + std::chrono::seconds(config.reload_seconds);
  while (!stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    registry.collect();
    if (config.reload_seconds > 0 && Clock::now() >= next_reload) {
      const AdapterRegistry::ReloadResult r = registry.reload();
      for (const LoadedAdapter& a : r.loaded) {
        log(fmt::format("adapter {} v{} loaded in slot {}", a.name, a.version, a.slot));
      }
      for (const std::string& e : r.errors) log("adapter not loaded: " + e);
      next_reload = Clock::now() + std::chrono::seconds(config.reload_seconds);
    }
  }
}

// New requests get UNAVAILABLE; those in flight get `seconds` to finish.
void drain(ChatService& service, double seconds, const Log& log) {
  service.start_draining();
  log(fmt::format("draining: {} requests in flight, {:.0f} s to finish", service.in_flight(),
                  seconds));
  const Clock::time_point give_up = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                       std::chrono::duration<double>(seconds));
  while (service.in_flight() > 0 && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (service.in_flight() == 0) return;
  log(fmt::format("{} requests still running after the grace period: ended with UNAVAILABLE",
                  service.in_flight()));
  // Ended by the service, each gets its status before the server goes (the
  // engine lets a request go at its next step).
  service.abort_in_flight();
  const Clock::time_point ended = Clock::now() + std::chrono::seconds(2);
  while (service.in_flight() > 0 && Clock::now() < ended) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

void run_daemon(const RouterConfig& config, const nlohmann::json& experiments,
                const std::atomic<bool>& stop, const DaemonHooks& hooks) {
  const Log log = hooks.log ? hooks.log : [](const std::string& line) {
    std::fprintf(stderr, "vitrined: %s\n", line.c_str());
  };
  models::init_runtime({.threads = config.threads, .device = config.device});
  MetricsRegistry metrics;
  const std::unique_ptr<MetricsHttpServer> metrics_server = start_metrics(metrics, config, log);
  ChatService service(config.answerer, Authenticator::from_config(config.auth), metrics);
  const std::unique_ptr<grpc::Server> server = start_server(config, service, log);

  ServingParts parts = load_parts(config, experiments, log);
  const std::shared_ptr<models::Engine> engine = parts.answerer.engine;
  const std::shared_ptr<AdapterRegistry> registry = parts.answerer.registry;
  metrics.gauge_callback("vitrine_queue_depth", "Requests waiting for a row of the batch",
                         [engine] { return static_cast<double>(engine->stats().queued); });
  metrics.gauge_callback("vitrine_batch_size", "Rows in the running batch",
                         [engine] { return static_cast<double>(engine->stats().running); });
  service.ready(std::move(parts));
  set_health(*server, true);
  log("serving");

  poll_adapters(*registry, config, stop, log);

  set_health(*server, false);
  drain(service, config.drain_seconds, log);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (metrics_server) metrics_server->stop();
  log("stopped");
}

}  // namespace vitrine::router
