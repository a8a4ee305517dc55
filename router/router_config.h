// What configs/router.yaml sets: everything vitrined needs to start — where
// it listens, what it loads, how it batches, routes, grounds, secures and
// reports. A test keeps the shipped file equal to these defaults.
//
// Relative paths are taken from the daemon's working directory. The YAML is
// turned into JSON at the program's edge (router/vitrined.cc); this file
// binds that JSON with unknown keys refused by name.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vitrine::router {

struct EngineConfig {
  int max_batch = 8;                // rows decoded together
  int max_queue = 64;               // requests waiting at most; more get RESOURCE_EXHAUSTED
  int max_input_chars = 2000;       // bytes of a request's text at most
  int max_prompt_tokens = 1024;     // a rendered prompt's tokens at most
  int max_new_tokens = 256;         // cap on a request's max_new_tokens
  int default_new_tokens = 96;      // when a request sets none
  double repetition_penalty = 1.1;  // when a request sets none
};

struct RoutingConfig {
  double min_confidence = 0.6;       // classifier confidence below which default_route answers
  std::string default_route = "qa";  // describe or qa
  bool exact_titles = true;          // a known title is described even if it ends with "?"
  std::string grounding = "none";    // qa prompt: none, title or title_and_description
  double describe_min_score = 0.8;   // title-match score for a describe source
  double qa_min_score = 0.6;         // title-match score for the product a question is about
  int max_description_chars = 1200;  // grounding text cut at a word boundary
};

struct TlsConfig {
  std::string cert;       // PEM certificate chain; empty = plaintext
  std::string key;        // PEM private key of `cert`
  std::string client_ca;  // PEM CA bundle; set = clients must present a certificate it signed
};

struct AuthConfig {
  std::string user_tokens_file;   // one bearer token per line; empty with admin empty = no auth
  std::string admin_tokens_file;  // tokens that may also call ReloadAdapters
};

struct RouterConfig {
  std::string listen = "127.0.0.1:50061";
  std::string model = "../shared/models/stories260K-hf";
  std::string adapters_dir = "out/run/adapters";
  std::vector<std::string> adapters = {"describe", "qa"};
  std::string classifier = "out/run/classifier";
  std::string catalog = "out/dataset/catalog.sqlite";
  std::string experiments;  // YAML file of A/B experiments; empty = none
  std::string response_log = "out/router/responses.sqlite";
  std::string device = "cpu";
  int threads = 0;            // torch threads; 0 = all cores
  int reload_seconds = 10;    // poll adapters_dir for new versions; 0 = only on request
  double drain_seconds = 20;  // SIGTERM: in-flight requests get this long to finish
  std::string metrics_listen = "127.0.0.1:9464";  // Prometheus /metrics; empty = off
  EngineConfig engine;
  RoutingConfig routing;
  TlsConfig tls;
  AuthConfig auth;
};

// Reads a config JSON (from YAML) over `config`; unknown keys, wrong types
// and values out of range throw std::invalid_argument naming the key.
void apply_router_config(const nlohmann::json& json, RouterConfig& config);
nlohmann::ordered_json router_config_to_json(const RouterConfig& config);

}  // namespace vitrine::router
