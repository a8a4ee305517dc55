#include "router/router_config.h"

#include <fmt/format.h>

#include <stdexcept>

#include "common/config_binder.h"

namespace vitrine::router {
namespace {

using Json = nlohmann::json;

void bind_top(ConfigBinder& b, RouterConfig& c) {
  b.field("listen", c.listen)
      .field("model", c.model)
      .field("adapters_dir", c.adapters_dir)
      .field("adapters", c.adapters)
      .field("classifier", c.classifier)
      .field("catalog", c.catalog)
      .field("experiments", c.experiments)
      .field("response_log", c.response_log)
      .field("device", c.device)
      .field("threads", c.threads)
      .field("reload_seconds", c.reload_seconds)
      .field("drain_seconds", c.drain_seconds)
      .field("metrics_listen", c.metrics_listen);
}

void bind(ConfigBinder& b, EngineConfig& e) {
  b.field("max_batch", e.max_batch)
      .field("max_queue", e.max_queue)
      .field("max_input_chars", e.max_input_chars)
      .field("max_prompt_tokens", e.max_prompt_tokens)
      .field("max_new_tokens", e.max_new_tokens)
      .field("default_new_tokens", e.default_new_tokens)
      .field("repetition_penalty", e.repetition_penalty);
}

void bind(ConfigBinder& b, RoutingConfig& r) {
  b.field("min_confidence", r.min_confidence)
      .field("default_route", r.default_route)
      .field("exact_titles", r.exact_titles)
      .field("grounding", r.grounding)
      .field("describe_min_score", r.describe_min_score)
      .field("qa_min_score", r.qa_min_score)
      .field("max_description_chars", r.max_description_chars);
}

void bind(ConfigBinder& b, TlsConfig& t) {
  b.field("cert", t.cert).field("key", t.key).field("client_ca", t.client_ca);
}

void bind(ConfigBinder& b, AuthConfig& a) {
  b.field("user_tokens_file", a.user_tokens_file).field("admin_tokens_file", a.admin_tokens_file);
}

// The section `name` of `json` (absent: left as it is) bound to `value`.
template <typename T>
void read_section(const Json& json, const char* name, T& value) {
  const auto it = json.find(name);
  if (it == json.end() || it->is_null()) return;
  if (!it->is_object()) {
    throw std::invalid_argument(fmt::format("config key 'router.{}': expected a mapping", name));
  }
  ConfigBinder b(&*it, fmt::format("router.{}", name));
  bind(b, value);
  b.finish_reading();
}

template <typename T>
nlohmann::ordered_json section_json(const char* name, T value) {
  ConfigBinder b(nullptr, fmt::format("router.{}", name));
  bind(b, value);
  return b.take();
}

void require(bool ok, const char* key, const char* expected) {
  if (!ok) throw std::invalid_argument(fmt::format("config key 'router.{}': {}", key, expected));
}

void validate(const RouterConfig& c) {
  require(!c.listen.empty(), "listen", "expected host:port");
  require(!c.model.empty(), "model", "expected a model directory");
  require(!c.adapters.empty(), "adapters", "expected at least one adapter name");
  require(c.threads >= 0, "threads", "expected >= 0");
  require(c.reload_seconds >= 0, "reload_seconds", "expected >= 0");
  require(c.drain_seconds >= 0, "drain_seconds", "expected >= 0");
  const EngineConfig& e = c.engine;
  require(e.max_batch >= 1, "engine.max_batch", "expected >= 1");
  require(e.max_queue >= 1, "engine.max_queue", "expected >= 1");
  require(e.max_input_chars >= 1, "engine.max_input_chars", "expected >= 1");
  require(e.max_prompt_tokens >= 1, "engine.max_prompt_tokens", "expected >= 1");
  require(e.max_new_tokens >= 1, "engine.max_new_tokens", "expected >= 1");
  require(e.default_new_tokens >= 1 && e.default_new_tokens <= e.max_new_tokens,
          "engine.default_new_tokens", "expected between 1 and engine.max_new_tokens");
  require(e.repetition_penalty > 0, "engine.repetition_penalty", "expected > 0");
  const RoutingConfig& r = c.routing;
  require(r.min_confidence >= 0 && r.min_confidence <= 1, "routing.min_confidence",
          "expected between 0 and 1");
  require(r.default_route == "describe" || r.default_route == "qa", "routing.default_route",
          "expected describe or qa");
  require(r.grounding == "none" || r.grounding == "title" || r.grounding == "title_and_description",
          "routing.grounding", "expected none, title or title_and_description");
  require(r.describe_min_score >= 0 && r.describe_min_score <= 1, "routing.describe_min_score",
          "expected between 0 and 1");
  require(r.qa_min_score >= 0 && r.qa_min_score <= 1, "routing.qa_min_score",
          "expected between 0 and 1");
  require(r.max_description_chars >= 16, "routing.max_description_chars", "expected >= 16");
  require(c.tls.cert.empty() == c.tls.key.empty(), "tls",
          "cert and key go together: set both or neither");
  require(c.tls.client_ca.empty() || !c.tls.cert.empty(), "tls.client_ca",
          "checking client certificates needs the server's own cert and key");
}

}  // namespace

void apply_router_config(const Json& json, RouterConfig& config) {
  if (!json.is_object()) throw std::invalid_argument("router config: expected a mapping");
  Json top = json;
  for (const char* name : {"engine", "routing", "tls", "auth"}) top.erase(name);
  ConfigBinder b(&top, "router");
  bind_top(b, config);
  b.finish_reading();
  read_section(json, "engine", config.engine);
  read_section(json, "routing", config.routing);
  read_section(json, "tls", config.tls);
  read_section(json, "auth", config.auth);
  validate(config);
}

nlohmann::ordered_json router_config_to_json(const RouterConfig& config) {
  RouterConfig copy = config;
  ConfigBinder b(nullptr, "router");
  bind_top(b, copy);
  nlohmann::ordered_json out = b.take();
  out["engine"] = section_json("engine", config.engine);
  out["routing"] = section_json("routing", config.routing);
  out["tls"] = section_json("tls", config.tls);
  out["auth"] = section_json("auth", config.auth);
  return out;
}

}  // namespace vitrine::router
