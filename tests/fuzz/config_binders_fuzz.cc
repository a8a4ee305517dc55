// Fuzz target: a YAML config file through load_yaml_as_json and the config
// binders of `vitrine prepare` (apply_config_json), vitrined
// (apply_router_config) and vitrine-gateway (apply_gateway_config), as the
// programs' mains read configs/*.yaml; all bind through
// common/config_binder.h, which every binder shares.
// Not covered: the trainer's binder (training/train_config.h reaches libtorch
// headers, which clang 14 does not compile in C++20).
//
// Documented errors: std::runtime_error from the YAML reader (syntax, file),
// std::invalid_argument from the binders (unknown key, wrong type or range).
// Properties: a config a binder accepts is written back by its *_to_json and
// that record binds again to the same config.
#include <stdexcept>

#include "common/yaml_json.h"
#include "dataset/prepare.h"
#include "gateway/gateway_config.h"
#include "router/router_config.h"
#include "tests/fuzz/fuzz_support.h"

using namespace vitrine;

namespace {

// Binds `json` over a default config; when accepted, checks the round trip.
template <typename Config, typename Apply, typename ToJson>
void bind_and_round_trip(const nlohmann::json& json, Config defaults, Apply apply, ToJson to_json) {
  Config config = defaults;
  try {
    apply(json, config);
  } catch (const std::invalid_argument&) {
    return;  // refused with a message naming the key: the documented outcome
  }
  const std::string written = to_json(config).dump();
  Config again = defaults;
  try {
    apply(nlohmann::json::parse(written), again);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "%s\n%s\n", written.c_str(), e.what());
    VITRINE_FUZZ_CHECK(false, "a written config binds again");
  }
  VITRINE_FUZZ_CHECK(to_json(again).dump() == written, "a written config binds to itself");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::ScratchFile scratch("config.yaml");
  nlohmann::json json;
  try {
    json = load_yaml_as_json(scratch.write(fuzz::as_text(data, size)));
  } catch (const std::runtime_error&) {
    return 0;
  }
  bind_and_round_trip(json, dataset::PrepareConfig{}, dataset::apply_config_json,
                      dataset::config_to_json);
  bind_and_round_trip(json, router::RouterConfig{}, router::apply_router_config,
                      router::router_config_to_json);
  bind_and_round_trip(json, gateway::GatewayConfig{}, gateway::apply_gateway_config,
                      gateway::gateway_config_to_json);
  return 0;
}
