#include "prompts/prompts.h"

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace vitrine::prompts {

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

models::ChatTurn grounded_qa_turn(std::string_view question, std::string_view title,
                                  std::string_view description) {
  models::ChatTurn turn = task_turn(Task::kQa, question);
  turn.user = description.empty()
                  ? fmt::format("Product: {}\n\n{}", title, question)
                  : fmt::format("Product: {}\nDescription: {}\n\n{}", title, description, question);
  return turn;
}

}  // namespace vitrine::prompts
