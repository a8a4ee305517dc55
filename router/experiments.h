// A/B experiments: which adapter version answers a request, split by user.
//
// An experiment applies to some of the classifier's routes (describe, qa)
// and has weighted arms, each naming an adapter version (-1 the base model,
// 0 the current version, N > 0 published version N). A request is assigned
// to the first experiment that applies to its route, and to an arm by a
// stable hash (XXH3, common/stable_hash.h) of the experiment's name and the
// user id: the same user gets the same arm on every request, every restart
// and every machine, and different experiments split users independently.
// A request without a user id is placed by a key the caller passes (the
// response id, say), or failing that by a seeded per-daemon counter.
//
// Config (YAML turned into JSON at the edge):
//   experiments:
//     - name: tuned-vs-base        # unique; recorded with every response
//       routes: [describe, qa]     # default: both
//       arms:
//         - {name: base, adapter_version: -1, weight: 1}
//         - {name: tuned, adapter_version: 0, weight: 1}
//
// Changing an experiment's weights moves some users between its arms;
// renaming it reshuffles all of them. Not goals: mutual exclusion across
// experiments on the same route (the first one wins), ramp-ups over time,
// bandits that learn from feedback.
#pragma once

#include <atomic>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine::router {

struct ExperimentArm {
  std::string name;             // required; unique within its experiment
  int64_t adapter_version = 0;  // -1 the base model (no adapter), 0 the current (newest)
                                // version, N > 0 published version N
  double weight = 1;            // > 0; the arm's share is weight / sum of the weights
};

struct Experiment {
  std::string name;                                   // required; unique
  std::vector<std::string> routes{"describe", "qa"};  // the routes it applies to
  std::vector<ExperimentArm> arms;                    // at least one
};

struct ExperimentsConfig {
  std::vector<Experiment> experiments;  // none: no request is in an experiment
};

// Reads {"experiments": [...]} (a missing or null key: no experiments).
// Throws std::invalid_argument naming the key path of the first problem,
// e.g. "experiments[0].arms[1].weight: expected > 0 (got 0)"; unknown keys
// are errors.
ExperimentsConfig parse_experiments_config(const nlohmann::json& config);
// The config as read back by parse_experiments_config (defaults filled in).
nlohmann::ordered_json experiments_config_to_json(const ExperimentsConfig& config);

// Where a request goes.
struct Assignment {
  std::string experiment;
  std::string arm;
  int64_t adapter_version = 0;  // as ExperimentArm::adapter_version
};

class Experiments {
 public:
  // Validates as parse_experiments_config does (throws std::invalid_argument).
  // `seed` drives the counter that places requests with neither a user id
  // nor a fallback key.
  explicit Experiments(ExperimentsConfig config, uint64_t seed = 0);

  // The first experiment applying to `route` and the user's arm in it;
  // nothing when no experiment applies. An empty `user_id` is placed by
  // `fallback_key` (the response id, so a logged response can be re-derived),
  // or by the seeded counter when that is empty too. Thread-safe.
  std::optional<Assignment> assign(std::string_view route, std::string_view user_id,
                                   std::string_view fallback_key = {}) const;

  const ExperimentsConfig& config() const { return config_; }
  uint64_t seed() const { return seed_; }

 private:
  ExperimentsConfig config_;
  uint64_t seed_;
  mutable std::atomic<uint64_t> anonymous_requests_{0};
};

// The arm of `experiment` that `key` (a user id) falls in: the arm whose
// slice of [0, 1), cut in proportion to the weights in order, holds
// unit_interval(stable_hash64(name + '\0' + key)).
const ExperimentArm& arm_for_key(const Experiment& experiment, std::string_view key);

}  // namespace vitrine::router
