#include "training/train_config.h"

#include <fmt/format.h>

#include "common/config_binder.h"

namespace vitrine::training {
namespace {

using Json = nlohmann::ordered_json;

void bind_adapter(ConfigBinder& b, AdapterTrainConfig& a) {
  b.field("task", a.task)
      .field("rank", a.rank)
      .field("alpha", a.alpha)
      .field("dropout", a.dropout)
      .field("rslora", a.rslora)
      .field("target_modules", a.target_modules)
      .field("learning_rate", a.optimizer.learning_rate)
      .field("schedule", a.optimizer.schedule)
      .field("warmup_steps", a.optimizer.warmup_steps)
      .field("min_lr_ratio", a.optimizer.min_lr_ratio)
      .field("weight_decay", a.optimizer.weight_decay)
      .field("max_grad_norm", a.optimizer.max_grad_norm)
      .field("beta1", a.optimizer.beta1)
      .field("beta2", a.optimizer.beta2)
      .field("eps", a.optimizer.eps)
      .field("epochs", a.epochs)
      .field("max_steps", a.max_steps)
      .field("batch_size", a.batch_size)
      .field("gradient_accumulation", a.gradient_accumulation)
      .field("max_seq_len", a.max_seq_len)
      .field("packing", a.packing)
      .field("train_examples", a.train_examples)
      .field("validation_examples", a.validation_examples)
      .field("eval_every", a.eval_every)
      .field("checkpoint_every", a.checkpoint_every)
      .field("patience", a.patience);
}

void bind_run(ConfigBinder& b, TrainConfig& c) {
  b.field("base_model", c.base_model)
      .field("dataset", c.dataset)
      .field("output", c.output)
      .field("seed", c.seed)
      .field("threads", c.threads)
      .field("device", c.device);
}

void bind_classifier(ConfigBinder& b, TrainConfig& c) {
  b.field("enabled", c.classifier_enabled)
      .field("buckets", c.classifier.buckets)
      .field("dim", c.classifier.dim)
      .field("epochs", c.classifier.epochs)
      .field("batch_size", c.classifier.batch_size)
      .field("learning_rate", c.classifier.learning_rate);
}

void check(const std::string& name, const AdapterTrainConfig& a) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(fmt::format("config 'adapters.{}': {}", name, what));
  };
  if (a.task != "describe" && a.task != "qa")
    fail(fmt::format("task '{}': expected describe or qa", a.task));
  if (a.rank < 1) fail("rank must be at least 1");
  if (a.dropout < 0 || a.dropout >= 1) fail("dropout must be in [0, 1)");
  if (a.target_modules.empty()) fail("target_modules is empty");
  if (a.optimizer.learning_rate <= 0) fail("learning_rate must be positive");
  if (a.batch_size < 1 || a.gradient_accumulation < 1)
    fail("batch_size and gradient_accumulation must be at least 1");
  if (a.max_seq_len < 8) fail("max_seq_len must be at least 8");
  if (a.epochs < 1 && a.max_steps < 1) fail("set epochs or max_steps");
  if (a.optimizer.schedule != "constant" && a.optimizer.schedule != "linear" &&
      a.optimizer.schedule != "cosine") {
    fail(fmt::format("schedule '{}': expected constant, linear or cosine", a.optimizer.schedule));
  }
}

}  // namespace

TrainConfig default_train_config() {
  TrainConfig c;
  AdapterTrainConfig describe;
  describe.task = "describe";
  describe.optimizer.learning_rate = 2e-3;
  describe.optimizer.warmup_steps = 20;
  AdapterTrainConfig qa = describe;
  qa.task = "qa";
  c.adapters["describe"] = describe;
  c.adapters["qa"] = qa;
  return c;
}

void apply_train_config(const nlohmann::json& json, TrainConfig& c) {
  if (!json.is_object()) throw std::invalid_argument("train config must be a mapping");
  {
    nlohmann::json top = json;
    top.erase("adapters");
    top.erase("classifier");
    ConfigBinder b(&top, "train");
    bind_run(b, c);
    b.finish_reading();
  }
  if (json.contains("classifier")) {
    if (!json["classifier"].is_object()) {
      throw std::invalid_argument("config 'classifier' must be a mapping");
    }
    ConfigBinder b(&json["classifier"], "classifier");
    bind_classifier(b, c);
    b.finish_reading();
    if (c.classifier.buckets < 16 || c.classifier.dim < 1 || c.classifier.epochs < 1 ||
        c.classifier.batch_size < 1 || c.classifier.learning_rate <= 0) {
      throw std::invalid_argument(
          "config 'classifier': buckets >= 16, dim, epochs, batch_size >= 1, learning_rate > 0");
    }
  }
  if (json.contains("adapters")) {
    const auto& adapters = json["adapters"];
    if (!adapters.is_object() || adapters.empty()) {
      throw std::invalid_argument("config 'adapters' must map adapter names to settings");
    }
    std::map<std::string, AdapterTrainConfig> out;
    for (const auto& [name, section] : adapters.items()) {
      if (!section.is_object()) {
        throw std::invalid_argument(fmt::format("config 'adapters.{}' must be a mapping", name));
      }
      // Unset keys take the built-in adapter's values (describe's for any name).
      AdapterTrainConfig a = default_train_config().adapters.at("describe");
      a.task = name;
      ConfigBinder b(&section, "adapters." + name);
      bind_adapter(b, a);
      b.finish_reading();
      out[name] = a;
    }
    c.adapters = std::move(out);
  }
  for (const auto& [name, a] : c.adapters) check(name, a);
}

Json train_config_to_json(const TrainConfig& config) {
  TrainConfig c = config;
  ConfigBinder top(nullptr, "train");
  bind_run(top, c);
  Json out = top.take();
  Json adapters = Json::object();
  for (const auto& [name, a] : c.adapters) adapters[name] = adapter_train_config_to_json(a);
  out["adapters"] = adapters;
  ConfigBinder classifier(nullptr, "classifier");
  bind_classifier(classifier, c);
  out["classifier"] = classifier.take();
  return out;
}

Json adapter_train_config_to_json(const AdapterTrainConfig& config) {
  AdapterTrainConfig a = config;
  ConfigBinder b(nullptr, "adapters");
  bind_adapter(b, a);
  return b.take();
}

}  // namespace vitrine::training
