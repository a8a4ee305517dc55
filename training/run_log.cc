#include "training/run_log.h"

#include <fmt/format.h>

#include <stdexcept>

namespace vitrine::training {
namespace fs = std::filesystem;
namespace {

std::ofstream open_for_append(const fs::path& file) {
  std::ofstream out(file, std::ios::app);
  if (!out) throw std::runtime_error(fmt::format("cannot write '{}'", file.string()));
  return out;
}

}  // namespace

RunLog::RunLog(const fs::path& output, Callback on_event)
    : metrics_(open_for_append(output / "metrics.jsonl")),
      board_(std::in_place, output / "tensorboard"),
      on_event_(std::move(on_event)) {}

void RunLog::record(const TrainingEvent& event) {
  if (!metrics_) return;
  *metrics_ << to_json(event).dump() << '\n';
  metrics_->flush();
  if (on_event_) on_event_(event);
  for (const Scalar& s : scalars_of(event)) board_->scalar(s.tag, s.value, s.step);
}

}  // namespace vitrine::training
