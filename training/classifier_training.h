// Training the router's classifier (models/text_classifier.h) on the
// dataset's router task (titles labelled describe, templated questions
// labelled qa, with the hard cases: questions that are mostly a title,
// titles that read like questions) and on texts generated from the same
// titles in many more shapes (router_examples.h), each looked up in the
// catalogue as the router will look it up when serving (TitleEvidenceFinder);
// then measuring it on the held-out split and on texts generated from the
// test split's titles.
//
// Not goals: the catalogue itself (training/ reads no SQLite: the caller
// passes the finder, agents::title_evidence over the dataset's catalogue),
// the hand-written evaluation sets of tests/data (never read here).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "models/text_features.h"
#include "training/router_examples.h"

namespace vitrine::training {

struct ClassifierTrainConfig {
  int64_t buckets = 1 << 17;  // hashed feature slots
  int64_t dim = 32;           // embedding width
  int64_t epochs = 8;         // passes over the router's and the generated texts
  int64_t batch_size = 32;
  double learning_rate = 0.02;     // Adam
  int feature_set = 2;             // models/text_features.h: 2 adds positions, shape and
                                   // catalogue evidence; 1 is the words-only set of older runs
  RouterExampleOptions generated;  // texts generated per title (the seed is the run's)
};

// Where a known title sits in a text: the router's catalogue lookup.
using TitleEvidenceFinder = std::function<models::TitleEvidence(std::string_view text)>;

struct ClassifierReport {
  int64_t train_examples = 0;      // the router task's and the generated ones
  int64_t generated_examples = 0;  // of them, generated
  bool title_evidence = false;     // trained with catalogue evidence
  int64_t test_examples = 0;
  double validation_accuracy = 0;
  double test_accuracy = 0;
  int64_t test_hard = 0;  // hard cases in the test split
  double test_hard_accuracy = 0;
  std::map<std::string, double> test_accuracy_by_kind;  // title, question, question_title...
  int64_t generated_test_examples = 0;                  // generated from the test split's titles
  double generated_test_accuracy = 0;
  std::map<std::string, double> generated_test_accuracy_by_kind;  // question, request_pt...
  double microseconds_per_decision = 0;  // median, one text at a time, evidence lookup included
};

// The texts train_classifier learns from, in order: the router task's train
// split (<dataset>/tasks/router/train.jsonl), then the texts generated from
// its titles with `seed`. Throws std::runtime_error naming an unreadable or
// empty file.
std::vector<RouterExample> classifier_training_texts(const std::filesystem::path& dataset,
                                                     const ClassifierTrainConfig& config,
                                                     uint64_t seed);

// Trains on <dataset>/tasks/router/{train,validation,test}.jsonl and the
// texts generated from its train split's titles, and writes the classifier
// to `out_dir` (atomically) with its report. `evidence` empty: the
// classifier learns from the text alone (and records that it did, so the
// router does not look texts up for it).
ClassifierReport train_classifier(const std::filesystem::path& dataset,
                                  const std::filesystem::path& out_dir,
                                  const ClassifierTrainConfig& config, uint64_t seed,
                                  const TitleEvidenceFinder& evidence = {});

}  // namespace vitrine::training
