#include "models/text_classifier.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "common/atomic_output.h"
#include "models/safetensors.h"

namespace vitrine::models {
namespace fs = std::filesystem;

constexpr const char* kFormat1 = "vitrine-text-classifier-1";  // feature set 1
constexpr const char* kFormat2 = "vitrine-text-classifier-2";  // set 2, with feature_set and
                                                               // title_evidence keys

namespace {

// Softmax of the logits and the best label.
Classification classification_of(const TextClassifierConfig& config,
                                 const std::vector<float>& logits) {
  const float top = *std::max_element(logits.begin(), logits.end());
  double total = 0;
  std::vector<double> exps;
  for (const float v : logits) total += exps.emplace_back(std::exp(static_cast<double>(v - top)));
  Classification out;
  size_t best = 0;
  for (size_t i = 0; i < exps.size(); ++i) {
    out.scores.push_back(exps[i] / total);
    if (out.scores[i] > out.scores[best]) best = i;
  }
  out.label = config.labels[best];
  out.confidence = out.scores[best];
  return out;
}

}  // namespace

TextClassifierImpl::TextClassifierImpl(TextClassifierConfig config) : config_(std::move(config)) {
  if (config_.labels.size() < 2) throw std::invalid_argument("a classifier needs two labels");
  // Set 2 weighs its slots (TextFeatures::weights, summing to 1): a
  // weighted sum. Set 1: a plain mean.
  torch::nn::EmbeddingBagOptions options(config_.buckets, config_.dim);
  if (config_.feature_set >= 2) {
    options.mode(torch::kSum);
  } else {
    options.mode(torch::kMean);
  }
  embedding = register_module("embedding", torch::nn::EmbeddingBag(options));
  output = register_module(
      "output", torch::nn::Linear(config_.dim, static_cast<int64_t>(config_.labels.size())));
}

at::Tensor TextClassifierImpl::forward(const at::Tensor& features, const at::Tensor& offsets,
                                       const at::Tensor& weights) {
  return output(embedding(features, offsets, weights));  // [texts, labels]
}

// The forward pass for one text in plain loops over the weights, without a
// tensor op: the daemon classifies on gRPC's threads, and the first
// parallel tensor op of every new thread makes libtorch rebuild its
// thread pools (at::set_num_threads), which cost more than the
// classification itself under load.
Classification classify(TextClassifierImpl& model, std::string_view text,
                        const TitleEvidence& evidence) {
  const TextFeatures features = text_features(text, model.config(), evidence);
  const std::vector<int64_t>& slots = features.slots;
  const at::Tensor& table = model.embedding->weight;  // [buckets, dim]
  const at::Tensor& weight = model.output->weight;    // [labels, dim]
  const at::Tensor& bias = model.output->bias;        // [labels]
  if (!table.device().is_cpu() || !table.is_contiguous() || !weight.is_contiguous() ||
      table.scalar_type() != at::kFloat) {
    at::NoGradGuard no_grad;  // elsewhere (another device or layout): the module itself
    const at::Tensor weights =
        features.weights.empty() ? at::Tensor() : at::tensor(features.weights).to(table.device());
    const at::Tensor logits = model
                                  .forward(at::tensor(slots).to(table.device()),
                                           at::zeros({1}, at::kLong).to(table.device()), weights)[0]
                                  .to(at::kCPU);
    return classification_of(
        model.config(),
        std::vector<float>(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel()));
  }
  const int64_t dim = table.size(1), labels = weight.size(0);
  std::vector<float> mean(static_cast<size_t>(dim), 0.0f);  // the bag: weighted or plain mean
  const float* rows = table.data_ptr<float>();
  for (size_t i = 0; i < slots.size(); ++i) {
    const float* row = rows + slots[i] * dim;
    const float share = features.weights.empty() ? 1.0f : features.weights[i];
    for (int64_t d = 0; d < dim; ++d) mean[static_cast<size_t>(d)] += share * row[d];
  }
  if (features.weights.empty() && !slots.empty()) {
    for (float& v : mean) v /= static_cast<float>(slots.size());
  }
  std::vector<float> logits(static_cast<size_t>(labels));
  const float* w = weight.data_ptr<float>();
  const float* b = bias.defined() ? bias.data_ptr<float>() : nullptr;
  for (int64_t l = 0; l < labels; ++l) {
    float sum = b != nullptr ? b[l] : 0.0f;
    for (int64_t d = 0; d < dim; ++d) sum += w[l * dim + d] * mean[static_cast<size_t>(d)];
    logits[static_cast<size_t>(l)] = sum;
  }
  return classification_of(model.config(), logits);
}

void save_text_classifier(TextClassifierImpl& model, const fs::path& dir,
                          const nlohmann::json& extra) {
  const TextClassifierConfig& c = model.config();
  StagingDir staging(dir);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& item : model.named_parameters()) {
    tensors.emplace_back(item.key(), item.value().detach().to(at::kCPU).contiguous());
  }
  save_safetensors(staging.path() / "model.safetensors", tensors);
  // Set 1 keeps format 1, which older builds read; set 2 computes other
  // features from the same text, so a build that knows only format 1 must
  // refuse it rather than misread it.
  nlohmann::ordered_json j = {{"format", c.feature_set >= 2 ? kFormat2 : kFormat1},
                              {"labels", c.labels},
                              {"buckets", c.buckets},
                              {"dim", c.dim},
                              {"char_min", c.char_min},
                              {"char_max", c.char_max},
                              {"word_bigrams", c.word_bigrams}};
  if (c.feature_set >= 2) {
    j["feature_set"] = c.feature_set;
    j["title_evidence"] = c.title_evidence;
  }
  if (!extra.is_null()) j["training"] = extra;
  write_file_atomic(staging.path() / "classifier.json", j.dump(2) + "\n");
  staging.commit();
}

TextClassifier load_text_classifier(const fs::path& dir) {
  const fs::path config_path = dir / "classifier.json";
  std::ifstream in(config_path);
  if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", config_path.string()));
  TextClassifierConfig c;
  try {
    const auto j = nlohmann::json::parse(in);
    const std::string format = j.value("format", "");
    if (format != kFormat1 && format != kFormat2) {
      throw std::runtime_error(
          fmt::format("not a vitrine text classifier (format '{}', this build reads '{}' and '{}')",
                      format, kFormat1, kFormat2));
    }
    c.labels = j.at("labels").get<std::vector<std::string>>();
    c.buckets = j.at("buckets");
    c.dim = j.at("dim");
    c.char_min = j.at("char_min");
    c.char_max = j.at("char_max");
    c.word_bigrams = j.at("word_bigrams");
    if (format == kFormat2) {
      c.feature_set = j.at("feature_set");
      c.title_evidence = j.at("title_evidence");
      if (c.feature_set != 2) {
        throw std::runtime_error(
            fmt::format("feature_set {}: this build computes sets 1 and 2", c.feature_set));
      }
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("'{}': {}", config_path.string(), e.what()));
  }
  TextClassifier model(c);
  const SafetensorsFile file = SafetensorsFile::open(dir / "model.safetensors");
  at::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) {
    if (!file.contains(item.key())) {
      throw std::runtime_error(fmt::format("tensor '{}' missing from '{}'", item.key(),
                                           (dir / "model.safetensors").string()));
    }
    const at::Tensor t = file.get(item.key());
    if (t.sizes() != item.value().sizes()) {
      throw std::runtime_error(
          fmt::format("tensor '{}' in '{}' has shape {}, classifier.json implies {}", item.key(),
                      (dir / "model.safetensors").string(), c10::str(t.sizes()),
                      c10::str(item.value().sizes())));
    }
    item.value().copy_(t);
  }
  model->eval();
  return model;
}

}  // namespace vitrine::models
