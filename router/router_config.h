// What configs/router.yaml sets: everything vitrined needs to start — where
// it listens, what it loads, how it batches, routes, grounds, secures and
// reports. A test keeps the shipped file equal to these defaults.
//
// Each YAML section fills the struct of the library that uses it, so every
// default is stated once, where it is used: `engine:` fills
// models::EngineOptions (the engine's limits) and AnswererOptions (a
// request's defaults and input limit); `routing:` fills the classifier,
// describe and qa agents' options. The daemon passes them on unchanged.
//
// Relative paths are taken from the daemon's working directory. The YAML is
// turned into JSON at the program's edge (router/vitrined.cc); this file
// binds that JSON with unknown keys refused by name. Not goals: reloading
// the config while serving (restart the pod).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agents/agent_options.h"
#include "models/engine_options.h"

namespace vitrine::router {

// What a request gets when it does not say, and how big it may be; the
// answerer (router/answerer.h) applies these. YAML: the engine section
// (qa_adapter: the top level).
struct AnswererOptions {
  int max_input_chars = 2000;       // bytes of a request's text at most (INVALID_ARGUMENT above):
                                    // bounds the catalogue search and the prompt
  int default_new_tokens = 96;      // tokens generated when a request does not say; at most
                                    // EngineOptions::max_new_tokens
  double repetition_penalty = 1.1;  // when a request sets none; > 1 discourages repeating tokens
  int max_history_turns = 32;       // earlier turns of a conversation a request may carry
                                    // (INVALID_ARGUMENT above): bounds the product search over
                                    // them and what is rendered and tokenized to fit the prompt
  int max_history_bytes = 32768;    // bytes of those turns' text in all (INVALID_ARGUMENT
                                    // above); what passes max_prompt_tokens is left out anyway,
                                    // oldest first, so more only costs tokenizing
  std::string qa_adapter = "qa";    // YAML top level: the adapter the qa agent answers with,
                                    // one of RouterConfig::adapters (qa_grounded: the grounded
                                    // one, asked with the description it was trained on)
};

// The agents' options, exactly as the agents take them. YAML: the routing
// section (min_confidence, default_route, exact_titles, near_titles -> classifier;
// describe_min_score -> describe; grounding, qa_min_score,
// max_description_chars -> qa; unknown_product, unknown_closest,
// unknown_closest_min_score -> unknown). Their defaults are the agents':
// grounding "adapter" and max_description_chars 0 ask each adapter in the
// prompt format it was trained with (its prompt_format.json).
struct RoutingOptions {
  agents::ClassifierAgentOptions classifier;  // which agent answers a text
  agents::DescribeAgentOptions describe;      // describe prompt's sources
  agents::QaAgentOptions qa;                  // qa prompt's grounding and sources
  agents::UnknownProductOptions unknown;      // a question about no known product
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
  std::string listen = "127.0.0.1:50061";                 // gRPC address
  std::string model = "../shared/models/stories260K-hf";  // Hugging Face Llama directory
  std::string adapters_dir = "out/run/adapters";          // <name>/v<N>/ or a run's adapters/
  std::vector<std::string> adapters = {"describe", "qa",  // loaded: describe answers titles,
                                       "qa_grounded"};    // answerer.qa_adapter questions
  std::string classifier = "out/run/classifier";          // the router classifier's directory
  std::string catalog = "out/dataset/catalog.sqlite";     // sources and grounding
  std::string experiments;  // YAML file of A/B experiments; empty = none
  std::string response_log = "out/router/responses.sqlite";  // empty = no log, no Feedback
  std::string device = "cpu";                                // cpu, cuda or cuda:N
  std::string weights = "auto";  // auto, f32, bf16 or int8: the base's format (models::BaseDtype)
  int threads = 0;               // torch threads; 0 = all cores
  int reload_seconds = 10;       // poll adapters_dir for new versions; 0 = only on request
  double drain_seconds = 20;     // SIGTERM: in-flight requests get this long to finish
  std::string metrics_listen = "127.0.0.1:9464";  // Prometheus /metrics; empty = off
  models::EngineOptions engine;                   // YAML engine: batch, queue and length caps
  AnswererOptions answerer;                       // YAML engine: request defaults, input limit
  RoutingOptions routing;                         // YAML routing
  TlsConfig tls;                                  // YAML tls
  AuthConfig auth;                                // YAML auth
};

// Reads a config JSON (from YAML) over `config`; unknown keys, wrong types
// and values out of range throw std::invalid_argument naming the key.
void apply_router_config(const nlohmann::json& json, RouterConfig& config);
nlohmann::ordered_json router_config_to_json(const RouterConfig& config);

}  // namespace vitrine::router
