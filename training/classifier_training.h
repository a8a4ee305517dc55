// Training the router's classifier (models/text_classifier.h) on the
// dataset's router task: titles labelled describe, questions labelled qa,
// including the hard cases (questions that are mostly a title, titles that
// read like questions), and measuring it on the held-out split.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

namespace vitrine::training {

struct ClassifierTrainConfig {
  int64_t buckets = 1 << 17;  // hashed feature slots
  int64_t dim = 32;           // embedding width
  int64_t epochs = 8;         // passes over tasks/router/train.jsonl
  int64_t batch_size = 32;
  double learning_rate = 0.02;  // Adam
};

struct ClassifierReport {
  int64_t train_examples = 0;
  int64_t test_examples = 0;
  double validation_accuracy = 0;
  double test_accuracy = 0;
  int64_t test_hard = 0;  // hard cases in the test split
  double test_hard_accuracy = 0;
  std::map<std::string, double> test_accuracy_by_kind;  // title, question, question_title...
  double microseconds_per_decision = 0;                 // median, one text at a time
};

// Trains on <dataset>/tasks/router/{train,validation,test}.jsonl and writes
// the classifier to `out_dir` (atomically) with its report.
ClassifierReport train_classifier(const std::filesystem::path& dataset,
                                  const std::filesystem::path& out_dir,
                                  const ClassifierTrainConfig& config, uint64_t seed);

}  // namespace vitrine::training
