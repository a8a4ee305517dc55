#include "agents/agent_options.h"

#include <fmt/format.h>

#include <stdexcept>

namespace vitrine::agents {

std::string_view unknown_product_name(UnknownProduct answer) {
  return answer == UnknownProduct::kGenerate ? "generate" : "say";
}

UnknownProduct parse_unknown_product(std::string_view name) {
  for (const UnknownProduct a : {UnknownProduct::kSay, UnknownProduct::kGenerate}) {
    if (name == unknown_product_name(a)) return a;
  }
  throw std::invalid_argument(fmt::format("unknown_product '{}': expected say or generate", name));
}

}  // namespace vitrine::agents
