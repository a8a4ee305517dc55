#include "models/text_classifier.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "common/atomic_output.h"
#include "common/stable_hash.h"
#include "models/safetensors.h"

namespace vitrine::models {
namespace fs = std::filesystem;

std::vector<int64_t> text_features(std::string_view text, const TextClassifierConfig& c) {
  std::string lowered;
  lowered.reserve(text.size());
  for (const char ch : text) {
    lowered.push_back(ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch);
  }
  // Words: runs of letters, digits and non-ASCII bytes.
  std::vector<std::string> words;
  std::string word;
  for (const char ch : lowered) {
    const auto u = static_cast<unsigned char>(ch);
    if (std::isalnum(u) || u >= 0x80) {
      word.push_back(ch);
    } else if (!word.empty()) {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  std::vector<int64_t> out;
  const auto slot = [&](std::string_view kind, std::string_view value) {
    const uint64_t h = stable_hash64(value, stable_hash64(kind));
    out.push_back(static_cast<int64_t>(h % static_cast<uint64_t>(c.buckets)));
  };
  for (size_t i = 0; i < words.size(); ++i) {
    slot("w", words[i]);
    if (c.word_bigrams && i + 1 < words.size()) slot("b", words[i] + ' ' + words[i + 1]);
    const std::string marked = "<" + words[i] + ">";
    for (int n = c.char_min; n <= c.char_max; ++n) {
      for (size_t k = 0; k + static_cast<size_t>(n) <= marked.size(); ++k) {
        slot("c", std::string_view(marked).substr(k, static_cast<size_t>(n)));
      }
    }
  }
  // How the text ends is the strongest single sign of a question.
  size_t end = lowered.find_last_not_of(" \t\r\n");
  slot("end", end == std::string::npos ? "" : std::string(1, lowered[end]));
  if (words.empty()) slot("empty", "");
  return out;
}

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
  embedding = register_module(
      "embedding",
      torch::nn::EmbeddingBag(
          torch::nn::EmbeddingBagOptions(config_.buckets, config_.dim).mode(torch::kMean)));
  output = register_module(
      "output", torch::nn::Linear(config_.dim, static_cast<int64_t>(config_.labels.size())));
}

at::Tensor TextClassifierImpl::forward(const at::Tensor& features, const at::Tensor& offsets) {
  return output(embedding(features, offsets));  // [texts, labels]
}

// The forward pass for one text in plain loops over the weights, without a
// tensor op: the daemon classifies on gRPC's threads, and the first
// parallel tensor op of every new thread makes libtorch rebuild its
// thread pools (at::set_num_threads), which cost more than the
// classification itself under load.
Classification classify(TextClassifierImpl& model, std::string_view text) {
  const std::vector<int64_t> features = text_features(text, model.config());
  const at::Tensor& table = model.embedding->weight;  // [buckets, dim]
  const at::Tensor& weight = model.output->weight;    // [labels, dim]
  const at::Tensor& bias = model.output->bias;        // [labels]
  if (!table.device().is_cpu() || !table.is_contiguous() || !weight.is_contiguous() ||
      table.scalar_type() != at::kFloat) {
    at::NoGradGuard no_grad;  // elsewhere (another device or layout): the module itself
    const at::Tensor logits =
        model.forward(at::tensor(features), at::zeros({1}, at::kLong))[0].to(at::kCPU);
    return classification_of(
        model.config(),
        std::vector<float>(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel()));
  }
  const int64_t dim = table.size(1), labels = weight.size(0);
  std::vector<float> mean(static_cast<size_t>(dim), 0.0f);
  const float* rows = table.data_ptr<float>();
  for (const int64_t f : features) {
    const float* row = rows + f * dim;
    for (int64_t d = 0; d < dim; ++d) mean[static_cast<size_t>(d)] += row[d];
  }
  if (!features.empty()) {
    for (float& v : mean) v /= static_cast<float>(features.size());
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
  nlohmann::ordered_json j = {{"format", "vitrine-text-classifier-1"},
                              {"labels", c.labels},
                              {"buckets", c.buckets},
                              {"dim", c.dim},
                              {"char_min", c.char_min},
                              {"char_max", c.char_max},
                              {"word_bigrams", c.word_bigrams}};
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
    if (j.value("format", "") != "vitrine-text-classifier-1") {
      throw std::runtime_error("not a vitrine text classifier (format)");
    }
    c.labels = j.at("labels").get<std::vector<std::string>>();
    c.buckets = j.at("buckets");
    c.dim = j.at("dim");
    c.char_min = j.at("char_min");
    c.char_max = j.at("char_max");
    c.word_bigrams = j.at("word_bigrams");
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
