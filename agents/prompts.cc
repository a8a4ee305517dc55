#include "agents/prompts.h"

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace vitrine::agents {

std::string_view task_name(Task task) {
  return task == Task::kDescribe ? "describe" : "qa";
}

Task parse_task(std::string_view name) {
  if (name == "describe") return Task::kDescribe;
  if (name == "qa") return Task::kQa;
  throw std::invalid_argument(fmt::format("task '{}': expected describe or qa", name));
}

TaskFields task_fields(Task task) {
  return task == Task::kDescribe ? TaskFields{"prompt", "completion"}
                                 : TaskFields{"question", "answer"};
}

models::ChatTurn task_turn(Task task, std::string_view input) {
  if (task == Task::kDescribe) {
    return {.system = "You write product descriptions for an online shop.",
            .user = fmt::format("Describe this product: {}", input)};
  }
  return {.system = "You answer shoppers' questions about products.", .user = std::string(input)};
}

}  // namespace vitrine::agents
