// An adapter's training checkpoints: checkpoints/<adapter>/step-N/ holds the
// adapter, the best adapter so far, the optimizer's moments (optimizer.pt)
// and the loop state (state.json), written into a staging directory and
// renamed into place, so a crash leaves the previous checkpoint or the new
// one. Restoring one puts every piece back, so a resumed run takes the
// steps the uninterrupted run would have taken.
//
// Not goals: keeping only the last N checkpoints, checkpointing the base
// model (it is never trained), saving random generator state (each step
// reseeds its dropout masks; see lora_recipe.cc).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>

#include "models/peft_adapter.h"
#include "training/lora_trainer.h"

namespace vitrine::training {

// Where a run is between steps: enough to continue it exactly.
struct LoopState {
  int64_t step = 0;                      // optimizer steps done
  int64_t epoch = -1;                    // epoch of the current data order (-1: none yet)
  size_t cursor = SIZE_MAX;              // next row of that order (past the end: new epoch)
  double best_loss = INFINITY;           // best validation loss so far
  int64_t best_step = 0;                 // the step that reached it
  int64_t evaluations_without_gain = 0;  // towards patience
  int64_t tokens = 0;                    // tokens processed, all ranks
};

// Writes checkpoint `dir` (checkpoints/<adapter>/step-N) atomically: the
// trainer's adapter and optimizer, `best`, and `state`.
void save_checkpoint(const std::filesystem::path& dir, LoraTrainer& trainer,
                     const models::PeftAdapter& best, const LoopState& state);

struct CheckpointDir {
  std::filesystem::path dir;  // checkpoints/<adapter>/step-N
  int64_t step = 0;           // N
};

// The checkpoint in `dir` (checkpoints/<adapter>) with the most steps, if
// any; directories without a state.json are not checkpoints.
std::optional<CheckpointDir> latest_checkpoint(const std::filesystem::path& dir);

// Loads checkpoint `dir` into the trainer (adapter tensors, optimizer
// moments, steps done) and `best`; returns its loop state. Throws when the
// checkpoint lacks a module the trainer's adapter has (another config).
LoopState restore_checkpoint(const std::filesystem::path& dir, LoraTrainer& trainer,
                             models::PeftAdapter& best);

}  // namespace vitrine::training
