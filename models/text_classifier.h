// A small, fast text classifier: hashed feature slots (text_features.h:
// word and character n-grams, and in set 2 positions, shape and catalogue
// evidence) averaged in an embedding bag, then one linear layer (the
// fastText design) in libtorch. vitrine's router uses it to tell a bare
// product title from a question about a product in well under a millisecond.
//
// Saved as a directory: classifier.json (labels, hashing, feature set and
// shape, training metrics) and model.safetensors. Not goals: subword
// vocabularies, multi-label output.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "models/text_features.h"

namespace vitrine::models {

class TextClassifierImpl : public torch::nn::Module {
 public:
  explicit TextClassifierImpl(TextClassifierConfig config);
  // Flat feature slots of a batch, each text's start and, for feature set
  // 2, each slot's weight (TextFeatures::weights) -> logits [texts, labels].
  at::Tensor forward(const at::Tensor& features, const at::Tensor& offsets,
                     const at::Tensor& weights = {});
  const TextClassifierConfig& config() const { return config_; }

  torch::nn::EmbeddingBag embedding{nullptr};
  torch::nn::Linear output{nullptr};

 private:
  TextClassifierConfig config_;
};
TORCH_MODULE(TextClassifier);

struct Classification {
  std::string label;
  double confidence = 0;       // probability of `label`
  std::vector<double> scores;  // probability per label, in config order
};

// Classifies one text (no gradients); `evidence` as text_features reads it.
Classification classify(TextClassifierImpl& model, std::string_view text,
                        const TitleEvidence& evidence = {});

// Writes `dir` (atomically) with `extra` recorded in classifier.json.
void save_text_classifier(TextClassifierImpl& model, const std::filesystem::path& dir,
                          const nlohmann::json& extra = {});
// Throws std::runtime_error naming the file for a missing or inconsistent part.
TextClassifier load_text_classifier(const std::filesystem::path& dir);

}  // namespace vitrine::models
