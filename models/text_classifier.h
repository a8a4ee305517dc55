// A small, fast text classifier: hashed word and character n-grams averaged
// in an embedding bag, then one linear layer (the fastText design) in
// libtorch. vitrine's router uses it to tell a bare product title from a
// question about a product in well under a millisecond.
//
// Saved as a directory: classifier.json (labels, hashing and shape,
// training metrics) and model.safetensors. Not goals: subword vocabularies,
// multi-label output.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine::models {

struct TextClassifierConfig {
  std::vector<std::string> labels;  // output classes, in order
  int64_t buckets = 1 << 17;        // hashed feature slots: fewer collide more, cost less memory
  int64_t dim = 32;                 // embedding width
  int char_min = 2, char_max = 4;   // character n-gram lengths (of the lowercased text)
  bool word_bigrams = true;         // pairs of adjacent words as features too
};

// Feature slots of `text`: lowercased (ASCII) words, word bigrams,
// character n-grams with word boundaries marked, and whether the text ends
// with a question mark, each hashed (XXH3) into [0, buckets).
std::vector<int64_t> text_features(std::string_view text, const TextClassifierConfig& config);

class TextClassifierImpl : public torch::nn::Module {
 public:
  explicit TextClassifierImpl(TextClassifierConfig config);
  // Flat feature slots of a batch and each text's start -> logits [texts, labels].
  at::Tensor forward(const at::Tensor& features, const at::Tensor& offsets);
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

// Classifies one text (no gradients).
Classification classify(TextClassifierImpl& model, std::string_view text);

// Writes `dir` (atomically) with `extra` recorded in classifier.json.
void save_text_classifier(TextClassifierImpl& model, const std::filesystem::path& dir,
                          const nlohmann::json& extra = {});
// Throws std::runtime_error naming the file for a missing or inconsistent part.
TextClassifier load_text_classifier(const std::filesystem::path& dir);

}  // namespace vitrine::models
