#include "training/classifier_training.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "models/text_classifier.h"
#include "training/examples.h"

namespace vitrine::training {
namespace fs = std::filesystem;
namespace {

struct Labelled {
  std::string text, label, kind;
  bool hard = false;
};

std::vector<Labelled> read_router(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", file.string()));
  std::vector<Labelled> out;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains("text") || !j.contains("label")) {
      throw std::runtime_error(
          fmt::format("'{}' line {}: not a router task line", file.string(), n));
    }
    out.push_back({j["text"], j["label"], j.value("kind", ""), j.value("hard", false)});
  }
  return out;
}

int64_t label_index(const std::vector<std::string>& labels, const std::string& label) {
  const auto it = std::find(labels.begin(), labels.end(), label);
  if (it == labels.end()) throw std::runtime_error(fmt::format("unknown router label '{}'", label));
  return it - labels.begin();
}

double accuracy(models::TextClassifierImpl& model, const std::vector<Labelled>& items) {
  if (items.empty()) return 0;
  int64_t right = 0;
  for (const auto& item : items) right += models::classify(model, item.text).label == item.label;
  return static_cast<double>(right) / static_cast<double>(items.size());
}

// A fresh classifier, seeded, initialised as fastText initialises one.
models::TextClassifier new_classifier(const ClassifierTrainConfig& c, uint64_t seed) {
  models::TextClassifierConfig mc;
  mc.labels = {"describe", "qa"};
  mc.buckets = c.buckets;
  mc.dim = c.dim;
  at::manual_seed(seed);
  models::TextClassifier model(mc);
  at::NoGradGuard no_grad;
  const double bound = 1.0 / static_cast<double>(c.dim);  // fastText's initialisation
  model->embedding->weight.uniform_(-bound, bound);
  return model;
}

// Adam on cross-entropy, `c.epochs` passes over the examples in a seeded
// shuffled order, batches of `c.batch_size`.
void fit(models::TextClassifierImpl& model, const std::vector<Labelled>& train,
         const ClassifierTrainConfig& c, uint64_t seed) {
  const models::TextClassifierConfig& mc = model.config();
  std::vector<std::vector<int64_t>> features;
  std::vector<int64_t> targets;
  for (const auto& item : train) {
    features.push_back(models::text_features(item.text, mc));
    targets.push_back(label_index(mc.labels, item.label));
  }
  torch::optim::Adam optimizer(model.parameters(), torch::optim::AdamOptions(c.learning_rate));
  std::mt19937_64 rng(seed);
  std::vector<size_t> order(train.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  model.train();
  for (int64_t epoch = 0; epoch < c.epochs; ++epoch) {
    shuffle_order(order, rng);
    for (size_t start = 0; start < order.size(); start += static_cast<size_t>(c.batch_size)) {
      const size_t end = std::min(order.size(), start + static_cast<size_t>(c.batch_size));
      std::vector<int64_t> flat, offsets, labels;
      for (size_t k = start; k < end; ++k) {
        offsets.push_back(static_cast<int64_t>(flat.size()));
        const auto& f = features[order[k]];
        flat.insert(flat.end(), f.begin(), f.end());
        labels.push_back(targets[order[k]]);
      }
      optimizer.zero_grad();
      const at::Tensor logits = model.forward(at::tensor(flat), at::tensor(offsets));
      at::cross_entropy_loss(logits, at::tensor(labels)).backward();
      optimizer.step();
    }
  }
  model.eval();
}

// The median time of one decision, one text at a time.
double median_microseconds(models::TextClassifierImpl& model, const std::vector<Labelled>& items) {
  std::vector<double> micros;
  for (const auto& item : items) {
    const auto start = std::chrono::steady_clock::now();
    models::classify(model, item.text);
    micros.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::nth_element(micros.begin(), micros.begin() + static_cast<std::ptrdiff_t>(micros.size() / 2),
                   micros.end());
  return micros[micros.size() / 2];
}

ClassifierReport measure(models::TextClassifierImpl& model, const std::vector<Labelled>& train,
                         const std::vector<Labelled>& validation,
                         const std::vector<Labelled>& test) {
  ClassifierReport report;
  report.train_examples = static_cast<int64_t>(train.size());
  report.test_examples = static_cast<int64_t>(test.size());
  report.validation_accuracy = accuracy(model, validation);
  report.test_accuracy = accuracy(model, test);
  std::vector<Labelled> hard;
  std::map<std::string, std::vector<Labelled>> by_kind;
  for (const auto& item : test) {
    if (item.hard) hard.push_back(item);
    by_kind[item.kind].push_back(item);
  }
  report.test_hard = static_cast<int64_t>(hard.size());
  report.test_hard_accuracy = accuracy(model, hard);
  for (const auto& [kind, items] : by_kind)
    report.test_accuracy_by_kind[kind] = accuracy(model, items);
  report.microseconds_per_decision = median_microseconds(model, test.empty() ? train : test);
  return report;
}

}  // namespace

ClassifierReport train_classifier(const fs::path& dataset, const fs::path& out_dir,
                                  const ClassifierTrainConfig& c, uint64_t seed) {
  const fs::path dir = dataset / "tasks" / "router";
  const auto train = read_router(dir / "train.jsonl");
  const auto validation = read_router(dir / "validation.jsonl");
  const auto test = read_router(dir / "test.jsonl");
  if (train.empty())
    throw std::runtime_error(fmt::format("no examples in '{}'", (dir / "train.jsonl").string()));
  models::TextClassifier model = new_classifier(c, seed);
  fit(*model, train, c, seed);
  const ClassifierReport report = measure(*model, train, validation, test);
  nlohmann::json extra = {{"train_examples", report.train_examples},
                          {"test_examples", report.test_examples},
                          {"validation_accuracy", report.validation_accuracy},
                          {"test_accuracy", report.test_accuracy},
                          {"test_hard", report.test_hard},
                          {"test_hard_accuracy", report.test_hard_accuracy},
                          {"test_accuracy_by_kind", report.test_accuracy_by_kind},
                          {"microseconds_per_decision", report.microseconds_per_decision},
                          {"epochs", c.epochs},
                          {"learning_rate", c.learning_rate},
                          {"seed", seed}};
  models::save_text_classifier(*model, out_dir, extra);
  return report;
}

}  // namespace vitrine::training
