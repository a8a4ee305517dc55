// `vitrine train`: both adapters from one prepared dataset, each trained,
// evaluated on its validation split at intervals, checkpointed, and
// published in the run directory:
//
//   <output>/adapters/<name>/           PEFT adapter + training.json (base and
//                                       dataset fingerprints, seed, config,
//                                       final metrics)
//   <output>/checkpoints/<name>/step-N/ adapter, optimizer state, state.json
//   <output>/classifier/                the router's title-or-question classifier
//   <output>/metrics.jsonl              one line per event (training_event.h)
//   <output>/tensorboard/               the same scalars as TensorBoard event files
//   <output>/config.json                the configuration the run used
//
// run_training prepares the run directory and the base model, then runs
// the recipe (lora_recipe.h) for each adapter in turn and trains the
// classifier. The adapter published is the one with the lowest validation
// loss (the last one when no evaluation ran). Every file and directory is
// written atomically: a crash leaves the previous state or the new one.
//
// Data-parallel (options.data_parallel with world_size > 1): every rank
// runs this with the same config; an optimizer step takes batch_size x
// gradient_accumulation rows on each rank, world_size times as many in all,
// and is the step one process taking all those rows would take. Rank 0
// alone writes the run directory; before publishing, every rank checks
// that its adapter is rank 0's. --resume needs the run directory on a
// volume every rank reads.
//
// Not goals: choosing hyperparameters, training the base model's weights.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "training/data_parallel.h"
#include "training/train_config.h"
#include "training/training_event.h"

namespace vitrine::training {

struct TrainRunOptions {
  bool progress = true;                       // progress bar / log lines on stderr
  const std::atomic<bool>* cancel = nullptr;  // set to stop after the current step
  bool resume = false;  // continue each adapter from its latest checkpoint; skip finished ones
  DataParallelSettings data_parallel{};  // world_size 1: this process alone
  // Called (on rank 0) with each event as its line is written to
  // metrics.jsonl: start, resume, step, eval, done and classifier. Runs on
  // the training thread; keep it short. Empty: no callback.
  std::function<void(const TrainingEvent&)> on_event;
  // The router classifier's catalogue lookup for a dataset (the program
  // passes agents::title_evidence over <dataset>/catalog.sqlite: training/
  // reads no SQLite). Empty: the classifier learns from the text alone.
  std::function<TitleEvidenceFinder(const std::filesystem::path& dataset)> title_evidence;
};

struct AdapterOutcome {
  std::string name;
  int64_t steps = 0;
  double last_train_loss = 0;
  double best_validation_loss = 0;  // 0 when never evaluated
  int64_t best_step = 0;
  bool stopped_early = false;
  bool cancelled = false;
  double tokens_per_second = 0;
  // Largest difference between any rank's adapter and rank 0's (0 alone).
  double replicas_max_difference = 0;
  std::filesystem::path adapter_dir;
};

struct TrainOutcome {
  bool main_rank = true;  // false on ranks other than 0, which write nothing
  std::vector<AdapterOutcome> adapters;
  bool classifier_trained = false;
  ClassifierReport classifier;
  std::filesystem::path classifier_dir;
};

TrainOutcome run_training(const TrainConfig& config, const TrainRunOptions& options);

}  // namespace vitrine::training
