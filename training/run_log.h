// Where a run's events go: each one a line of <output>/metrics.jsonl
// (to_json of the event, flushed per line so a crash loses at most the
// line being written), its scalars in <output>/tensorboard/, and the
// caller's on_event callback. Rank 0 alone keeps a log; the other ranks'
// logs drop everything.
//
// Not goals: buffering, log rotation, reading the files back.
#pragma once

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>

#include "training/tensorboard.h"
#include "training/training_event.h"

namespace vitrine::training {

class RunLog {
 public:
  using Callback = std::function<void(const TrainingEvent&)>;

  // A log that drops every event (ranks other than 0).
  RunLog() = default;
  // Appends to <output>/metrics.jsonl, starts an event file in
  // <output>/tensorboard/, and calls `on_event` (if set) after each line.
  RunLog(const std::filesystem::path& output, Callback on_event);

  // Writes the event's line, calls on_event, then writes its scalars.
  void record(const TrainingEvent& event);

 private:
  std::optional<std::ofstream> metrics_;
  std::optional<TensorBoardWriter> board_;
  Callback on_event_;
};

}  // namespace vitrine::training
