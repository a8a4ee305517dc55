// What a training run reports as it goes, as typed events: the recipe
// (training/lora_recipe.h) and run_training emit them, the run log writes
// each as one metrics.jsonl line (and its TensorBoard scalars), and the
// trainer service and the CLI read their fields directly.
//
// to_json(event) is the one place an event becomes a metrics.jsonl line;
// the field names and order there are the file's format, which the eval
// report's loss curves and users' scripts read. Not goals: reading
// metrics.jsonl back into events (nothing drives a run from the file), and
// events for the base-vs-tuned evaluation (evaluation.h returns its
// results).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "training/classifier_training.h"
#include "training/train_config.h"

namespace vitrine::training {

// An adapter starts training (after its data is loaded and packed).
struct StartEvent {
  std::string adapter;              // its name in the config (describe, qa, ...)
  std::string task;                 // describe or qa
  int64_t train_examples = 0;       // training examples kept
  int64_t train_rows = 0;           // rows they fill (fewer than examples when packing)
  int64_t truncated = 0;            // completions cut to fit max_seq_len (at a sentence end)
  int64_t cut_mid_sentence = 0;     // of those, cut inside their first sentence
  int64_t ended = 0;                // training examples whose completion ends with the end token
  std::string end_token;            // the token completions end with (prompts::EndToken)
  int64_t end_token_id = -1;        // its id; -1: none
  int64_t dropped_long_prompt = 0;  // examples dropped: the prompt alone did not fit
  int64_t validation_examples = 0;  // validation examples for the loss
  int64_t world_size = 1;           // data-parallel ranks
  int64_t rows_per_step = 0;        // rows an optimizer step takes over all ranks
  int64_t total_steps = 0;          // optimizer steps the adapter will take at most
};

// An adapter continues from its latest checkpoint (--resume).
struct ResumeEvent {
  std::string adapter;  // its name
  int64_t step = 0;     // optimizer steps the checkpoint had taken
};

// One optimizer step done.
struct StepEvent {
  std::string adapter;           // its name
  int64_t step = 0;              // 1-based: optimizer steps done
  int64_t epoch = 0;             // 0-based epoch of the data order the step read
  double loss = 0;               // mean over the step's targets, all ranks
  double learning_rate = 0;      // the rate the step used
  double grad_norm = 0;          // global L2 norm before clipping
  int64_t tokens = 0;            // tokens the step processed, all ranks
  int64_t real_tokens = 0;       // of those, not padding
  double tokens_per_second = 0;  // since this process started (or resumed) the adapter
  double seconds = 0;            // wall time since then
  double eta_seconds = 0;        // the remaining steps at this process's pace so far
};

// A validation loss (step 0 is the base model).
struct EvalEvent {
  std::string adapter;               // its name
  int64_t step = 0;                  // after this many optimizer steps
  double validation_loss = 0;        // mean over all validation targets
  double validation_perplexity = 0;  // exp(validation_loss)
  int64_t validation_targets = 0;    // tokens that counted
};

// The fingerprints an adapter records of what it was made from: XXH3-128
// of the files, 32 hex digits each.
struct Fingerprints {
  std::string base_model;  // the base's config.json and weight files (every shard)
  std::string dataset;     // the task's train.jsonl and validation.jsonl
};

// What adapters/<name>/training.json records of a published adapter.
struct AdapterRecord {
  std::string adapter;                    // its name
  std::string task;                       // describe or qa
  Fingerprints fingerprints;              // of the base model and the task files
  uint64_t seed = 0;                      // the run's seed
  int64_t steps = 0;                      // optimizer steps taken
  int64_t best_step = 0;                  // the step of the adapter published
  double best_validation_loss = 0;        // its validation loss; 0 when never evaluated
  double best_validation_perplexity = 0;  // exp(best_validation_loss)
  double last_train_loss = 0;             // the last step's loss
  bool stopped_early = false;             // patience ran out
  bool cancelled = false;                 // stopped by a signal or a cancel
  double tokens_per_second = 0;           // training throughput, all ranks
  int64_t world_size = 1;                 // data-parallel ranks
  int64_t rows_per_step = 0;              // rows an optimizer step took over all ranks
  double replicas_max_difference = 0;     // largest difference of a rank's adapter from rank 0's
  AdapterTrainConfig config;              // its adapters.<name> section of the run's config
};

// An adapter was published in adapters/<name>.
struct DoneEvent {
  AdapterRecord record;  // what its training.json says
};

// The router's classifier was trained and written to classifier/.
struct ClassifierEvent {
  ClassifierReport report;  // its accuracy on the held-out splits, and its speed
};

using TrainingEvent =
    std::variant<StartEvent, ResumeEvent, StepEvent, EvalEvent, DoneEvent, ClassifierEvent>;

// training.json's contents, in its key order.
nlohmann::ordered_json to_json(const AdapterRecord& record);

// The metrics.jsonl line of an event: {"event": "start" | "resume" | "step"
// | "eval" | "done" | "classifier", ...its fields}.
nlohmann::ordered_json to_json(const TrainingEvent& event);

// A TensorBoard scalar: tag <adapter>/<name>, value, step.
struct Scalar {
  std::string tag;
  double value = 0;
  int64_t step = 0;
};

// The scalars an event plots (steps and evaluations; none for the others).
std::vector<Scalar> scalars_of(const TrainingEvent& event);

}  // namespace vitrine::training
