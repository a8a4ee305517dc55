// A router classifier that ignores its input, for tests that need a known
// route: zero weights, so its probabilities are softmax(bias).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "models/text_classifier.h"

namespace vitrine::testing {

inline models::TextClassifier constant_classifier(
    double describe_bias, double qa_bias, std::vector<std::string> labels = {"describe", "qa"}) {
  models::TextClassifierConfig config;
  config.labels = std::move(labels);
  config.buckets = 64;
  config.dim = 4;
  models::TextClassifier model(config);
  at::NoGradGuard no_grad;
  model->embedding->weight.zero_();
  model->output->weight.zero_();
  model->output->bias[0].fill_(describe_bias);
  model->output->bias[1].fill_(qa_bias);
  return model;
}

}  // namespace vitrine::testing
