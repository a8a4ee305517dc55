// The real sample (../shared/data/amazon_titles_sample.jsonl) prepared as
// `vitrine prepare` prepares it, and the router classifier trained on it as
// `vitrine train` trains it (default_train_config, the dataset catalogue's
// evidence): once per test process, in a directory removed at exit. For the
// agents' tests on real products.
#pragma once

#include <filesystem>
#include <memory>

#include "../support/temp_dir.h"
#include "agents/classifier_agent.h"
#include "dataset/prepare.h"
#include "training/classifier_training.h"
#include "training/train_config.h"

namespace vitrine::agents::testing {

struct SampleRun {
  std::filesystem::path dataset;     // tasks/, catalog.sqlite
  std::filesystem::path classifier;  // the trained router classifier
  training::ClassifierReport report;
};

// nullptr when the sample is absent (tests skip).
inline const SampleRun* sample_run() {
  static const std::unique_ptr<vitrine::testing::TempDir> dir = [] {
    const auto sample = vitrine::testing::shared_path("data/amazon_titles_sample.jsonl");
    return std::filesystem::exists(sample) ? std::make_unique<vitrine::testing::TempDir>()
                                           : nullptr;
  }();
  static const std::unique_ptr<SampleRun> run = [] {
    if (!dir) return std::unique_ptr<SampleRun>();
    auto out = std::make_unique<SampleRun>();
    out->dataset = dir->path() / "dataset";
    out->classifier = dir->path() / "classifier";
    dataset::PrepareHooks hooks;
    hooks.progress = false;
    dataset::run_prepare(vitrine::testing::shared_path("data/amazon_titles_sample.jsonl"),
                         out->dataset, dataset::PrepareConfig{}, hooks);
    const training::TrainConfig config = training::default_train_config();
    out->report =
        training::train_classifier(out->dataset, out->classifier, config.classifier, config.seed,
                                   title_evidence_finder(out->dataset / "catalog.sqlite"));
    return out;
  }();
  return run.get();
}

// The skip message of tests that need the sample.
inline std::string no_sample_message() {
  return "no sample at " + vitrine::testing::shared_path("data").string() +
         "/amazon_titles_sample.jsonl (set -DVITRINE_SHARED_DIR)";
}

}  // namespace vitrine::agents::testing
