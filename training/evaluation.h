// The A/B of the study: on held-out test products (and a sample of training
// products, to tell learning from memorising) the base model and each tuned
// adapter answer the same prompts with the same greedy settings, side by
// side in one batch; their answers are scored against the dataset's
// references (ROUGE-1/2/L F1, corpus BLEU-4), and the references'
// perplexity under each tells how much closer tuning brought the model.
// Each adapter is asked in the prompt format it was trained with (a
// grounded qa adapter with the product's title and description, and the
// base model with the same prompt); qa answers are also scored for
// faithfulness to the product's description, and when a run has several
// qa adapters (closed-book and grounded) the report sets them side by side
// on the same questions. Every model's share of answers that stop by
// themselves is reported.
//
// Writes <run>/eval/report.json and report.md (atomically). Not goals:
// model-based judging, sampling several answers per prompt.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "training/train_config.h"

namespace vitrine::training {

struct EvalOptions {
  int64_t test_examples = 64;       // held-out products per task
  int64_t train_examples = 32;      // training products per task (fit, not generalisation)
  int max_new_tokens = 256;         // answer length cap, the same for base and tuned: room for
                                    // the qa references (median 160 tokens of stories260K's
                                    // 512-word vocabulary) and the serving cap (router.yaml)
  double repetition_penalty = 1.2;  // the same for base and tuned: small models loop without it
  int64_t batch_size = 8;           // prompts per generation batch (each as base and tuned)
  int64_t examples_in_report = 4;   // side-by-side examples per task and split in report.md
  bool progress = true;
};

struct SideBySide {
  std::string input, reference, base, tuned;
};

struct ModelScores {
  double rouge1 = 0, rouge2 = 0, rougeL = 0;  // mean F1 over examples
  double bleu = 0;                            // corpus BLEU-4, 0 to 100
  double perplexity = 0;                      // of the references
  double mean_words = 0;                      // answer length
  double stopped_share = 0;  // answers that ended by themselves (EOS or the chat format's end),
                             // not at max_new_tokens
  double faithfulness = 0;   // qa: mean share of an answer's content words found in the product's
                             // description (text_metrics.h), over answers with content words
};

struct SplitResult {
  std::string adapter, task, split;  // split: test or train
  std::string grounding = "none";    // the qa prompts' grounding (prompts::Grounding), base's too
  int64_t examples = 0;
  double reference_mean_words = 0;
  double reference_faithfulness = 0;  // qa: the references' own faithfulness (the ceiling)
  ModelScores base, tuned;
  std::vector<SideBySide> samples;
};

// One line of `r` for a terminal: "<adapter> <split> (<n> products): ROUGE-L
// base -> tuned, BLEU, perplexity, ended by themselves" (and for qa the
// grounding and faithfulness).
std::string summary_line(const SplitResult& r);

// Evaluates the adapters of the run in `run_dir` (its config.json and
// adapters/) and writes the report; returns the results.
std::vector<SplitResult> evaluate_run(const std::filesystem::path& run_dir,
                                      const EvalOptions& options);

}  // namespace vitrine::training
