#include "router/experiments.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

#include "common/config_binder.h"
#include "common/stable_hash.h"
#include "prompts/prompts.h"

namespace vitrine::router {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::invalid_argument(fmt::format("{}: {}", path, what));
}

void validate_arm(const ExperimentArm& arm, const std::string& path) {
  if (arm.name.empty()) fail(path + ".name", "required (a non-empty name)");
  if (arm.adapter_version < -1) {
    fail(path + ".adapter_version",
         fmt::format("expected -1 (base model), 0 (current version) or a published version > 0 "
                     "(got {})",
                     arm.adapter_version));
  }
  if (!std::isfinite(arm.weight) || arm.weight <= 0) {
    fail(path + ".weight", fmt::format("expected > 0 (got {})", arm.weight));
  }
}

void validate(const ExperimentsConfig& config) {
  std::set<std::string> names;
  std::set<std::string> routes_taken;
  for (size_t i = 0; i < config.experiments.size(); ++i) {
    const Experiment& e = config.experiments[i];
    const std::string path = fmt::format("experiments[{}]", i);
    if (e.name.empty()) fail(path + ".name", "required (a non-empty name)");
    if (!names.insert(e.name).second) {
      fail(path + ".name", fmt::format("'{}' is the name of an earlier experiment", e.name));
    }
    if (e.routes.empty()) fail(path + ".routes", "expected at least one route (describe, qa)");
    std::set<std::string> routes;
    for (size_t r = 0; r < e.routes.size(); ++r) {
      const std::string route_path = fmt::format("{}.routes[{}]", path, r);
      try {
        prompts::parse_task(e.routes[r]);
      } catch (const std::invalid_argument&) {
        fail(route_path, fmt::format("unknown route '{}' (known: describe, qa)", e.routes[r]));
      }
      if (!routes.insert(e.routes[r]).second) {
        fail(route_path, fmt::format("route '{}' listed twice", e.routes[r]));
      }
    }
    bool applies_somewhere = false;
    for (const auto& route : routes) applies_somewhere |= routes_taken.insert(route).second;
    if (!applies_somewhere) {
      fail(path + ".routes",
           "every route is taken by an earlier experiment (the first that applies wins), so this "
           "one would never run");
    }
    if (e.arms.empty()) fail(path + ".arms", "expected at least one arm");
    std::set<std::string> arm_names;
    for (size_t a = 0; a < e.arms.size(); ++a) {
      const std::string arm_path = fmt::format("{}.arms[{}]", path, a);
      validate_arm(e.arms[a], arm_path);
      if (!arm_names.insert(e.arms[a].name).second) {
        fail(arm_path + ".name", fmt::format("'{}' is the name of an earlier arm", e.arms[a].name));
      }
    }
  }
}

ExperimentArm parse_arm(const json& node, const std::string& path) {
  if (!node.is_object()) fail(path, fmt::format("expected a mapping (got {})", node.dump()));
  const auto version = node.find("adapter_version");
  if (version != node.end() && version->is_number_float()) {
    fail(path + ".adapter_version", fmt::format("expected an integer (got {})", version->dump()));
  }
  ExperimentArm arm;
  ConfigBinder binder(&node, path);
  binder.field("name", arm.name)
      .field("adapter_version", arm.adapter_version)
      .field("weight", arm.weight);
  binder.finish_reading();
  return arm;
}

Experiment parse_experiment(const json& node, const std::string& path) {
  if (!node.is_object()) fail(path, fmt::format("expected a mapping (got {})", node.dump()));
  Experiment experiment;
  json arms;
  ConfigBinder binder(&node, path);
  binder.field("name", experiment.name).field("routes", experiment.routes).field("arms", arms);
  binder.finish_reading();
  if (!arms.is_array() || arms.empty()) {
    fail(path + ".arms", fmt::format("expected a list of at least one arm (got {})", arms.dump()));
  }
  for (size_t a = 0; a < arms.size(); ++a) {
    experiment.arms.push_back(parse_arm(arms[a], fmt::format("{}.arms[{}]", path, a)));
  }
  return experiment;
}

// The arm whose slice of [0, 1) holds `unit`.
const ExperimentArm& arm_at(const Experiment& experiment, double unit) {
  double total = 0;
  for (const auto& arm : experiment.arms) total += arm.weight;
  const double point = unit * total;
  double end = 0;
  for (const auto& arm : experiment.arms) {
    end += arm.weight;
    if (point < end) return arm;
  }
  return experiment.arms.back();  // rounding at the very top
}

std::string hash_input(const Experiment& experiment, std::string_view key) {
  std::string bytes = experiment.name;
  bytes.push_back('\0');  // "ab" + "c" and "a" + "bc" differ
  bytes.append(key);
  return bytes;
}

}  // namespace

ExperimentsConfig parse_experiments_config(const json& config) {
  ExperimentsConfig out;
  if (config.is_null()) return out;
  if (!config.is_object()) {
    throw std::invalid_argument(
        fmt::format("experiments config: expected a mapping with the key 'experiments' (got {})",
                    config.dump()));
  }
  for (const auto& [key, _] : config.items()) {
    if (key != "experiments") {
      throw std::invalid_argument(
          fmt::format("unknown config key '{}' (known keys there: experiments)", key));
    }
  }
  const auto list = config.find("experiments");
  if (list == config.end() || list->is_null()) return out;
  if (!list->is_array()) {
    fail("experiments", fmt::format("expected a list (got {})", list->dump()));
  }
  for (size_t i = 0; i < list->size(); ++i) {
    out.experiments.push_back(parse_experiment((*list)[i], fmt::format("experiments[{}]", i)));
  }
  validate(out);
  return out;
}

nlohmann::ordered_json experiments_config_to_json(const ExperimentsConfig& config) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (Experiment e : config.experiments) {
    nlohmann::ordered_json arms = nlohmann::ordered_json::array();
    for (ExperimentArm arm : e.arms) {
      ConfigBinder binder(nullptr, "");
      binder.field("name", arm.name)
          .field("adapter_version", arm.adapter_version)
          .field("weight", arm.weight);
      arms.push_back(binder.take());
    }
    ConfigBinder binder(nullptr, "");
    binder.field("name", e.name).field("routes", e.routes);
    nlohmann::ordered_json node = binder.take();
    node["arms"] = std::move(arms);
    list.push_back(std::move(node));
  }
  nlohmann::ordered_json out;
  out["experiments"] = std::move(list);
  return out;
}

const ExperimentArm& arm_for_key(const Experiment& experiment, std::string_view key) {
  return arm_at(experiment, unit_interval(stable_hash64(hash_input(experiment, key))));
}

Experiments::Experiments(ExperimentsConfig config, uint64_t seed)
    : config_(std::move(config)), seed_(seed) {
  validate(config_);
}

std::optional<Assignment> Experiments::assign(std::string_view route, std::string_view user_id,
                                              std::string_view fallback_key) const {
  for (const Experiment& e : config_.experiments) {
    if (std::find(e.routes.begin(), e.routes.end(), route) == e.routes.end()) continue;
    const ExperimentArm* arm = nullptr;
    if (!user_id.empty()) {
      arm = &arm_for_key(e, user_id);
    } else if (!fallback_key.empty()) {
      arm = &arm_for_key(e, fallback_key);
    } else {
      const std::string n = std::to_string(anonymous_requests_.fetch_add(1));
      arm = &arm_at(e, unit_interval(stable_hash64(hash_input(e, n), seed_)));
    }
    return Assignment{e.name, arm->name, arm->adapter_version};
  }
  return std::nullopt;
}

}  // namespace vitrine::router
