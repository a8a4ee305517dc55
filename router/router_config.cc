#include "router/router_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "common/config_binder.h"

namespace vitrine::router {
namespace {

using Json = nlohmann::json;

void require(bool ok, const char* key, const char* expected) {
  if (!ok) throw std::invalid_argument(fmt::format("config key 'router.{}': {}", key, expected));
}

void bind_top(ConfigBinder& b, RouterConfig& c) {
  b.field("listen", c.listen)
      .field("model", c.model)
      .field("adapters_dir", c.adapters_dir)
      .field("adapters", c.adapters)
      .field("qa_adapter", c.answerer.qa_adapter)
      .field("classifier", c.classifier)
      .field("catalog", c.catalog)
      .field("experiments", c.experiments)
      .field("response_log", c.response_log)
      .field("device", c.device)
      .field("weights", c.weights)
      .field("threads", c.threads)
      .field("reload_seconds", c.reload_seconds)
      .field("drain_seconds", c.drain_seconds)
      .field("metrics_listen", c.metrics_listen);
}

// The engine section: the engine's own limits and the answerer's request
// defaults, in the order configs/router.yaml lists them.
void bind_engine(ConfigBinder& b, RouterConfig& c) {
  models::EngineOptions& e = c.engine;
  AnswererOptions& a = c.answerer;
  b.field("max_batch", e.max_batch)
      .field("max_queue", e.max_queue)
      .field("max_input_chars", a.max_input_chars)
      .field("max_prompt_tokens", e.max_prompt_tokens)
      .field("max_new_tokens", e.max_new_tokens)
      .field("default_new_tokens", a.default_new_tokens)
      .field("repetition_penalty", a.repetition_penalty)
      .field("max_history_turns", a.max_history_turns)
      .field("max_history_bytes", a.max_history_bytes);
}

// The routing section's keys for a question about no known product.
void bind_unknown_product(ConfigBinder& b, agents::UnknownProductOptions& u) {
  std::string answer(agents::unknown_product_name(u.answer));
  b.field("unknown_product", answer)
      .field("unknown_closest", u.max_closest)
      .field("unknown_closest_min_score", u.closest_min_score);
  require(answer == "say" || answer == "generate", "routing.unknown_product",
          "expected say or generate");
  u.answer = agents::parse_unknown_product(answer);
}

// The routing section: the agents' options. default_route and grounding
// are words in the YAML and enums in the options; grounding "adapter" is
// each adapter's own (no override).
void bind_routing(ConfigBinder& b, RouterConfig& c) {
  RoutingOptions& r = c.routing;
  std::string default_route(prompts::task_name(r.classifier.default_task));
  std::string grounding(r.qa.grounding ? agents::grounding_name(*r.qa.grounding) : "adapter");
  b.field("min_confidence", r.classifier.min_confidence)
      .field("default_route", default_route)
      .field("exact_titles", r.classifier.exact_titles)
      .field("near_titles", r.classifier.near_titles)
      .field("grounding", grounding)
      .field("describe_min_score", r.describe.sources.min_score)
      .field("qa_min_score", r.qa.sources.min_score)
      .field("max_description_chars", r.qa.max_description_chars);
  require(default_route == "describe" || default_route == "qa", "routing.default_route",
          "expected describe or qa");
  r.classifier.default_task = prompts::parse_task(default_route);
  r.qa.grounding.reset();
  if (grounding != "adapter") {
    try {
      r.qa.grounding = agents::parse_grounding(grounding);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(
          fmt::format("config key 'router.routing.grounding': {}; or adapter", e.what()));
    }
  }
  bind_unknown_product(b, r.unknown);
}

void bind_tls(ConfigBinder& b, RouterConfig& c) {
  b.field("cert", c.tls.cert).field("key", c.tls.key).field("client_ca", c.tls.client_ca);
}

void bind_auth(ConfigBinder& b, RouterConfig& c) {
  b.field("user_tokens_file", c.auth.user_tokens_file)
      .field("admin_tokens_file", c.auth.admin_tokens_file);
}

using Bind = void (*)(ConfigBinder&, RouterConfig&);
struct Section {
  const char* name;
  Bind bind;
};
constexpr Section kSections[] = {
    {"engine", bind_engine}, {"routing", bind_routing}, {"tls", bind_tls}, {"auth", bind_auth}};

// The section `name` of `json` (absent: left as it is) read into `config`.
void read_section(const Json& json, const Section& section, RouterConfig& config) {
  const auto it = json.find(section.name);
  if (it == json.end() || it->is_null()) return;
  if (!it->is_object()) {
    throw std::invalid_argument(
        fmt::format("config key 'router.{}': expected a mapping", section.name));
  }
  ConfigBinder b(&*it, fmt::format("router.{}", section.name));
  section.bind(b, config);
  b.finish_reading();
}

void validate(const RouterConfig& c) {
  require(!c.listen.empty(), "listen", "expected host:port");
  require(!c.model.empty(), "model", "expected a model directory");
  require(!c.adapters.empty(), "adapters", "expected at least one adapter name");
  require(
      std::find(c.adapters.begin(), c.adapters.end(), c.answerer.qa_adapter) != c.adapters.end(),
      "qa_adapter", "expected one of the names in adapters");
  require(c.threads >= 0, "threads", "expected >= 0");
  require(c.weights == "auto" || c.weights == "f32" || c.weights == "bf16" || c.weights == "int8",
          "weights", "expected auto, f32, bf16 or int8");
  require(c.reload_seconds >= 0, "reload_seconds", "expected >= 0");
  require(c.drain_seconds >= 0, "drain_seconds", "expected >= 0");
  const models::EngineOptions& e = c.engine;
  const AnswererOptions& a = c.answerer;
  require(e.max_batch >= 1, "engine.max_batch", "expected >= 1");
  require(e.max_queue >= 1, "engine.max_queue", "expected >= 1");
  require(a.max_input_chars >= 1, "engine.max_input_chars", "expected >= 1");
  require(e.max_prompt_tokens >= 1, "engine.max_prompt_tokens", "expected >= 1");
  require(e.max_new_tokens >= 1, "engine.max_new_tokens", "expected >= 1");
  require(a.default_new_tokens >= 1 && a.default_new_tokens <= e.max_new_tokens,
          "engine.default_new_tokens", "expected between 1 and engine.max_new_tokens");
  require(a.repetition_penalty > 0, "engine.repetition_penalty", "expected > 0");
  require(a.max_history_turns >= 0, "engine.max_history_turns", "expected >= 0");
  require(a.max_history_bytes >= 0, "engine.max_history_bytes", "expected >= 0");
  const RoutingOptions& r = c.routing;
  require(r.classifier.min_confidence >= 0 && r.classifier.min_confidence <= 1,
          "routing.min_confidence", "expected between 0 and 1");
  require(r.describe.sources.min_score >= 0 && r.describe.sources.min_score <= 1,
          "routing.describe_min_score", "expected between 0 and 1");
  require(r.qa.sources.min_score >= 0 && r.qa.sources.min_score <= 1, "routing.qa_min_score",
          "expected between 0 and 1");
  require(r.qa.max_description_chars == 0 || r.qa.max_description_chars >= 16,
          "routing.max_description_chars", "expected 0 (the adapter's own) or >= 16");
  require(r.unknown.max_closest >= 0 && r.unknown.max_closest <= 10, "routing.unknown_closest",
          "expected between 0 and 10");
  require(r.unknown.closest_min_score >= 0 && r.unknown.closest_min_score <= 1,
          "routing.unknown_closest_min_score", "expected between 0 and 1");
  require(c.tls.cert.empty() == c.tls.key.empty(), "tls",
          "cert and key go together: set both or neither");
  require(c.tls.client_ca.empty() || !c.tls.cert.empty(), "tls.client_ca",
          "checking client certificates needs the server's own cert and key");
}

}  // namespace

void apply_router_config(const Json& json, RouterConfig& config) {
  if (!json.is_object()) throw std::invalid_argument("router config: expected a mapping");
  Json top = json;
  for (const Section& s : kSections) top.erase(s.name);
  ConfigBinder b(&top, "router");
  bind_top(b, config);
  b.finish_reading();
  for (const Section& s : kSections) read_section(json, s, config);
  validate(config);
}

nlohmann::ordered_json router_config_to_json(const RouterConfig& config) {
  RouterConfig copy = config;
  ConfigBinder b(nullptr, "router");
  bind_top(b, copy);
  nlohmann::ordered_json out = b.take();
  for (const Section& s : kSections) {
    ConfigBinder section(nullptr, fmt::format("router.{}", s.name));
    s.bind(section, copy);
    out[s.name] = section.take();
  }
  return out;
}

}  // namespace vitrine::router
