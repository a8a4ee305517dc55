#include "agents/agent_options.h"

#include <fmt/format.h>

#include <stdexcept>

namespace vitrine::agents {

std::string_view grounding_name(Grounding grounding) {
  switch (grounding) {
    case Grounding::kNone:
      return "none";
    case Grounding::kTitle:
      return "title";
    case Grounding::kTitleAndDescription:
      return "title_and_description";
  }
  return "none";
}

Grounding parse_grounding(std::string_view name) {
  for (const Grounding g : {Grounding::kNone, Grounding::kTitle, Grounding::kTitleAndDescription}) {
    if (name == grounding_name(g)) return g;
  }
  throw std::invalid_argument(
      fmt::format("grounding '{}': expected none, title or title_and_description", name));
}

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
