// Fuzz target: adapter_config.json text through parse_peft_config, and an
// accepted config back through peft_config_json and parse_peft_config.
//
// Documented errors are std::runtime_error. Properties: an accepted config
// has r > 0; what peft_config_json writes parses back to the same settings
// (target_modules sorted and deduplicated, as written).
#include <set>
#include <stdexcept>

#include "models/peft_config.h"
#include "tests/fuzz/fuzz_support.h"

using namespace vitrine;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path path = "fuzz/adapter_config.json";
  models::PeftAdapterConfig config;
  try {
    config = models::parse_peft_config(fuzz::as_text(data, size), path);
  } catch (const std::runtime_error&) {
    return 0;
  }
  VITRINE_FUZZ_CHECK(config.r > 0, "accepted r is > 0");
  const std::string written = models::peft_config_json(config);
  models::PeftAdapterConfig again;
  try {
    again = models::parse_peft_config(written, path);
  } catch (const std::runtime_error& e) {
    std::fprintf(stderr, "%s\n%s\n", written.c_str(), e.what());
    VITRINE_FUZZ_CHECK(false, "a written config parses back");
  }
  const std::set<std::string> targets(config.target_modules.begin(), config.target_modules.end());
  VITRINE_FUZZ_CHECK(again.r == config.r, "r round-trips");
  VITRINE_FUZZ_CHECK(again.lora_alpha == config.lora_alpha, "lora_alpha round-trips");
  VITRINE_FUZZ_CHECK(again.lora_dropout == config.lora_dropout, "lora_dropout round-trips");
  VITRINE_FUZZ_CHECK(again.use_rslora == config.use_rslora, "use_rslora round-trips");
  VITRINE_FUZZ_CHECK(again.base_model_name_or_path == config.base_model_name_or_path,
                     "base_model_name_or_path round-trips");
  VITRINE_FUZZ_CHECK(
      again.target_modules == std::vector<std::string>(targets.begin(), targets.end()),
      "target_modules round-trip");
  return 0;
}
