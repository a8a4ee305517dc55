#include "training/classifier_training.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <chrono>
#include <cmath>
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
  bool evidence = true;    // looked up in the catalogue (when there is a finder)
  bool generated = false;  // by router_examples.h, not read from the dataset
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

// The describe-labelled texts of a router split: its products' titles (some
// in the casing noise the dataset adds).
std::vector<std::string> titles_of(const std::vector<Labelled>& items) {
  std::vector<std::string> out;
  for (const Labelled& item : items) {
    if (item.label == "describe") out.push_back(item.text);
  }
  return out;
}

std::vector<Labelled> generated(const std::vector<Labelled>& split,
                                const RouterExampleOptions& options) {
  std::vector<Labelled> out;
  for (RouterExample& e : generate_router_examples(titles_of(split), options)) {
    out.push_back(
        {std::move(e.text), std::move(e.label), std::move(e.kind), false, e.evidence, true});
  }
  return out;
}

RouterExampleOptions generation_options(const ClassifierTrainConfig& c, uint64_t seed) {
  RouterExampleOptions options = c.generated;
  options.seed = seed;
  return options;
}

// The router task's train split, then the texts generated from its titles.
std::vector<Labelled> training_texts(const fs::path& dataset, const ClassifierTrainConfig& c,
                                     uint64_t seed) {
  const fs::path file = dataset / "tasks" / "router" / "train.jsonl";
  std::vector<Labelled> train = read_router(file);
  if (train.empty()) throw std::runtime_error(fmt::format("no examples in '{}'", file.string()));
  const std::vector<Labelled> more = generated(train, generation_options(c, seed));
  train.insert(train.end(), more.begin(), more.end());
  return train;
}

// What the classifier reads of an example: the catalogue's evidence when
// the model uses it and the example is to be looked up.
models::TitleEvidence evidence_of(const models::TextClassifierConfig& config,
                                  const TitleEvidenceFinder& finder, const Labelled& item) {
  if (!config.title_evidence || !finder || !item.evidence) return {};
  return finder(item.text);
}

int64_t label_index(const std::vector<std::string>& labels, const std::string& label) {
  const auto it = std::find(labels.begin(), labels.end(), label);
  if (it == labels.end()) throw std::runtime_error(fmt::format("unknown router label '{}'", label));
  return it - labels.begin();
}

double accuracy(models::TextClassifierImpl& model, const TitleEvidenceFinder& finder,
                const std::vector<Labelled>& items) {
  if (items.empty()) return 0;
  int64_t right = 0;
  for (const auto& item : items) {
    const models::TitleEvidence e = evidence_of(model.config(), finder, item);
    right += models::classify(model, item.text, e).label == item.label;
  }
  return static_cast<double>(right) / static_cast<double>(items.size());
}

std::map<std::string, double> accuracy_by_kind(models::TextClassifierImpl& model,
                                               const TitleEvidenceFinder& finder,
                                               const std::vector<Labelled>& items) {
  std::map<std::string, std::vector<Labelled>> by_kind;
  for (const auto& item : items) by_kind[item.kind].push_back(item);
  std::map<std::string, double> out;
  for (const auto& [kind, group] : by_kind) out[kind] = accuracy(model, finder, group);
  return out;
}

// A fresh classifier, seeded, initialised as fastText initialises one.
models::TextClassifier new_classifier(const ClassifierTrainConfig& c, uint64_t seed,
                                      bool title_evidence) {
  models::TextClassifierConfig mc;
  mc.labels = {"describe", "qa"};
  mc.buckets = c.buckets;
  mc.dim = c.dim;
  mc.feature_set = c.feature_set;
  mc.title_evidence = title_evidence && c.feature_set >= 2;
  at::manual_seed(seed);
  models::TextClassifier model(mc);
  at::NoGradGuard no_grad;
  const double bound = 1.0 / static_cast<double>(c.dim);  // fastText's initialisation
  model->embedding->weight.uniform_(-bound, bound);
  return model;
}

// Adam for the embedding table that updates only the rows a batch used, as
// PyTorch's SparseAdam does: the table holds millions of weights and a batch
// touches a few thousand rows, so dense Adam spends nearly all its time on
// rows without a gradient (100 s instead of a few on the sample's 8,000
// texts). The moments of untouched rows wait unchanged.
class RowAdam {
 public:
  RowAdam(at::Tensor weight, double learning_rate)
      : weight_(std::move(weight)),
        m_(at::zeros_like(weight_)),
        v_(at::zeros_like(weight_)),
        learning_rate_(learning_rate) {}

  // Applies and clears the table's sparse gradient.
  void step() {
    at::NoGradGuard no_grad;
    const at::Tensor grad = weight_.grad().coalesce();
    const at::Tensor rows = grad.indices()[0];  // [touched]
    const at::Tensor g = grad.values();         // [touched, dim]
    ++steps_;
    const at::Tensor m = m_.index_select(0, rows).mul_(kBeta1).add_(g, 1 - kBeta1);
    const at::Tensor v = v_.index_select(0, rows).mul_(kBeta2).addcmul_(g, g, 1 - kBeta2);
    m_.index_copy_(0, rows, m);
    v_.index_copy_(0, rows, v);
    const double correction1 = 1 - std::pow(kBeta1, static_cast<double>(steps_));
    const double correction2 = 1 - std::pow(kBeta2, static_cast<double>(steps_));
    const at::Tensor update = (m / correction1) / (v / correction2).sqrt_().add_(kEpsilon);
    weight_.index_add_(0, rows, update, -learning_rate_);
    weight_.mutable_grad() = at::Tensor();
  }

 private:
  static constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEpsilon = 1e-8;  // Adam's defaults
  at::Tensor weight_, m_, v_;                                             // [buckets, dim] each
  double learning_rate_;
  int64_t steps_ = 0;
};

// Adam on cross-entropy (RowAdam for the table, plain Adam for the output
// layer), `c.epochs` passes over the examples in a seeded shuffled order,
// batches of `c.batch_size`.
void fit(models::TextClassifierImpl& model, const TitleEvidenceFinder& finder,
         const std::vector<Labelled>& train, const ClassifierTrainConfig& c, uint64_t seed) {
  const models::TextClassifierConfig& mc = model.config();
  std::vector<models::TextFeatures> features;
  std::vector<int64_t> targets;
  for (const auto& item : train) {
    features.push_back(models::text_features(item.text, mc, evidence_of(mc, finder, item)));
    targets.push_back(label_index(mc.labels, item.label));
  }
  model.embedding->options.sparse(true);
  RowAdam table_optimizer(model.embedding->weight, c.learning_rate);
  torch::optim::Adam optimizer(model.output->parameters(),
                               torch::optim::AdamOptions(c.learning_rate));
  std::mt19937_64 rng(seed);
  std::vector<size_t> order(train.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  model.train();
  for (int64_t epoch = 0; epoch < c.epochs; ++epoch) {
    shuffle_order(order, rng);
    for (size_t start = 0; start < order.size(); start += static_cast<size_t>(c.batch_size)) {
      const size_t end = std::min(order.size(), start + static_cast<size_t>(c.batch_size));
      std::vector<int64_t> flat, offsets, labels;
      std::vector<float> weights;
      for (size_t k = start; k < end; ++k) {
        offsets.push_back(static_cast<int64_t>(flat.size()));
        const models::TextFeatures& f = features[order[k]];
        flat.insert(flat.end(), f.slots.begin(), f.slots.end());
        weights.insert(weights.end(), f.weights.begin(), f.weights.end());
        labels.push_back(targets[order[k]]);
      }
      optimizer.zero_grad();
      const at::Tensor logits = model.forward(at::tensor(flat), at::tensor(offsets),
                                              weights.empty() ? at::Tensor() : at::tensor(weights));
      at::cross_entropy_loss(logits, at::tensor(labels)).backward();
      optimizer.step();
      table_optimizer.step();
    }
  }
  model.embedding->options.sparse(false);
  model.eval();
}

// The median time of one decision, one text at a time, its catalogue
// lookup included.
double median_microseconds(models::TextClassifierImpl& model, const TitleEvidenceFinder& finder,
                           const std::vector<Labelled>& items) {
  std::vector<double> micros;
  for (const auto& item : items) {
    const auto start = std::chrono::steady_clock::now();
    models::classify(model, item.text, evidence_of(model.config(), finder, item));
    micros.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::nth_element(micros.begin(), micros.begin() + static_cast<std::ptrdiff_t>(micros.size() / 2),
                   micros.end());
  return micros[micros.size() / 2];
}

ClassifierReport measure(models::TextClassifierImpl& model, const TitleEvidenceFinder& finder,
                         const std::vector<Labelled>& train,
                         const std::vector<Labelled>& validation, const std::vector<Labelled>& test,
                         const std::vector<Labelled>& generated_test) {
  ClassifierReport report;
  report.train_examples = static_cast<int64_t>(train.size());
  report.title_evidence = model.config().title_evidence;
  report.test_examples = static_cast<int64_t>(test.size());
  report.validation_accuracy = accuracy(model, finder, validation);
  report.test_accuracy = accuracy(model, finder, test);
  std::vector<Labelled> hard;
  for (const auto& item : test) {
    if (item.hard) hard.push_back(item);
  }
  report.test_hard = static_cast<int64_t>(hard.size());
  report.test_hard_accuracy = accuracy(model, finder, hard);
  report.test_accuracy_by_kind = accuracy_by_kind(model, finder, test);
  report.generated_test_examples = static_cast<int64_t>(generated_test.size());
  report.generated_test_accuracy = accuracy(model, finder, generated_test);
  report.generated_test_accuracy_by_kind = accuracy_by_kind(model, finder, generated_test);
  report.microseconds_per_decision =
      median_microseconds(model, finder, test.empty() ? train : test);
  return report;
}

}  // namespace

std::vector<RouterExample> classifier_training_texts(const fs::path& dataset,
                                                     const ClassifierTrainConfig& c,
                                                     uint64_t seed) {
  std::vector<RouterExample> out;
  for (Labelled& item : training_texts(dataset, c, seed)) {
    out.push_back(
        {std::move(item.text), std::move(item.label), std::move(item.kind), item.evidence});
  }
  return out;
}

ClassifierReport train_classifier(const fs::path& dataset, const fs::path& out_dir,
                                  const ClassifierTrainConfig& c, uint64_t seed,
                                  const TitleEvidenceFinder& evidence) {
  const fs::path dir = dataset / "tasks" / "router";
  const std::vector<Labelled> train = training_texts(dataset, c, seed);
  const auto validation = read_router(dir / "validation.jsonl");
  const auto test = read_router(dir / "test.jsonl");
  const std::vector<Labelled> generated_test = generated(test, generation_options(c, seed));
  models::TextClassifier model = new_classifier(c, seed, static_cast<bool>(evidence));
  fit(*model, evidence, train, c, seed);
  ClassifierReport report = measure(*model, evidence, train, validation, test, generated_test);
  report.generated_examples = static_cast<int64_t>(
      std::count_if(train.begin(), train.end(), [](const Labelled& l) { return l.generated; }));
  nlohmann::json extra = {
      {"train_examples", report.train_examples},
      {"generated_examples", report.generated_examples},
      {"title_evidence", report.title_evidence},
      {"test_examples", report.test_examples},
      {"validation_accuracy", report.validation_accuracy},
      {"test_accuracy", report.test_accuracy},
      {"test_hard", report.test_hard},
      {"test_hard_accuracy", report.test_hard_accuracy},
      {"test_accuracy_by_kind", report.test_accuracy_by_kind},
      {"generated_test_examples", report.generated_test_examples},
      {"generated_test_accuracy", report.generated_test_accuracy},
      {"generated_test_accuracy_by_kind", report.generated_test_accuracy_by_kind},
      {"microseconds_per_decision", report.microseconds_per_decision},
      {"epochs", c.epochs},
      {"learning_rate", c.learning_rate},
      {"generated_questions_per_title", c.generated.questions_per_title},
      {"generated_titles_per_title", c.generated.titles_per_title},
      {"without_evidence_share", c.generated.without_evidence_share},
      {"seed", seed}};
  models::save_text_classifier(*model, out_dir, extra);
  return report;
}

}  // namespace vitrine::training
