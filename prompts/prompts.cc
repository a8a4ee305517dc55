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

std::string_view grounding_name(Grounding grounding) {
  switch (grounding) {
    case Grounding::kNone:
      return "none";
    case Grounding::kTitle:
      return "title";
    case Grounding::kDescription:
      return "description";
  }
  return "none";
}

Grounding parse_grounding(std::string_view name) {
  for (const Grounding g : {Grounding::kNone, Grounding::kTitle, Grounding::kDescription}) {
    if (name == grounding_name(g)) return g;
  }
  if (name == "title_and_description") {
    throw std::invalid_argument(
        "grounding 'title_and_description' is now called 'description' (the same prompt)");
  }
  throw std::invalid_argument(
      fmt::format("grounding '{}': expected none, title or description", name));
}

models::ChatTurn qa_turn(std::string_view question, const QaFormat& format,
                         const std::optional<Product>& product) {
  if (format.grounding == Grounding::kNone || !product) return task_turn(Task::kQa, question);
  if (format.grounding == Grounding::kTitle) return grounded_qa_turn(question, product->title);
  return grounded_qa_turn(question, product->title,
                          cut_description(product->description, format.max_description_chars));
}

std::string cut_description(std::string_view text, size_t max_chars) {
  if (text.size() <= max_chars) return std::string(text);
  size_t end = max_chars;
  // Back off continuation bytes (10xxxxxx), so a UTF-8 sequence stays whole.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  // Back to the last space, unless that would leave nothing.
  const size_t space = text.rfind(' ', end);
  if (space != std::string_view::npos && space > 0) end = space;
  std::string out(text.substr(0, end));
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out + "...";
}

}  // namespace vitrine::prompts
