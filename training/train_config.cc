#include "training/train_config.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/config_binder.h"
#include "common/utf8.h"
#include "models/llama.h"
#include "training/end_token.h"
#include "training/memory_estimate.h"

namespace vitrine::training {
namespace {

using Json = nlohmann::ordered_json;

constexpr int64_t kMaxSteps = 100'000'000;  // no run here takes more optimizer steps

void bind_adapter(ConfigBinder& b, AdapterTrainConfig& a) {
  b.field("task", a.task)
      .field("grounding", a.grounding)
      .field("max_description_chars", a.max_description_chars)
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
      .field("device", c.device)
      .field("base_dtype", c.base_dtype)
      .field("activation_checkpointing", c.activation_checkpointing)
      .field("bf16_compute", c.bf16_compute)
      .field("end_token", c.end_token)
      .field("memory_limit_gb", c.memory_limit_gb);
}

void bind_classifier(ConfigBinder& b, TrainConfig& c) {
  b.field("enabled", c.classifier_enabled)
      .field("buckets", c.classifier.buckets)
      .field("dim", c.classifier.dim)
      .field("epochs", c.classifier.epochs)
      .field("batch_size", c.classifier.batch_size)
      .field("learning_rate", c.classifier.learning_rate)
      .field("feature_set", c.classifier.feature_set)
      .field("generated_questions", c.classifier.generated.questions_per_title)
      .field("generated_titles", c.classifier.generated.titles_per_title)
      .field("generated_portuguese_share", c.classifier.generated.portuguese_share)
      .field("without_evidence_share", c.classifier.generated.without_evidence_share)
      .field("max_generated_titles", c.classifier.generated.max_titles);
}

// Throws std::invalid_argument "config '<section>.<key>': <value> is not in
// <low>..<high>" when `value` is outside the closed range.
template <typename T>
void in_range(const std::string& section, const char* key, T value, T low, T high) {
  if (value < low || value > high) {
    throw std::invalid_argument(
        fmt::format("config '{}.{}': {} is not in {}..{}", section, key, value, low, high));
  }
}

void check_optimizer(const std::string& s, const OptimizerConfig& o) {
  if (!(o.learning_rate > 0 && o.learning_rate <= 1)) {
    throw std::invalid_argument(
        fmt::format("config '{}.learning_rate': {} is not in (0, 1]", s, o.learning_rate));
  }
  in_range(s, "warmup_steps", o.warmup_steps, int64_t{0}, kMaxSteps);
  in_range(s, "min_lr_ratio", o.min_lr_ratio, 0.0, 1.0);
  in_range(s, "weight_decay", o.weight_decay, 0.0, 10.0);
  in_range(s, "max_grad_norm", o.max_grad_norm, 0.0, 1e6);
  in_range(s, "beta1", o.beta1, 0.0, 0.999999);
  in_range(s, "beta2", o.beta2, 0.0, 0.999999);
  if (!(o.eps > 0 && o.eps <= 1)) {
    throw std::invalid_argument(fmt::format("config '{}.eps': {} is not in (0, 1]", s, o.eps));
  }
  if (o.schedule != "constant" && o.schedule != "linear" && o.schedule != "cosine") {
    throw std::invalid_argument(fmt::format(
        "config '{}.schedule': '{}': expected constant, linear or cosine", s, o.schedule));
  }
}

void check(const std::string& name, const AdapterTrainConfig& a) {
  const std::string s = "adapters." + name;
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(fmt::format("config '{}': {}", s, what));
  };
  check_adapter_name(name);
  if (a.task != "describe" && a.task != "qa")
    fail(fmt::format("task '{}': expected describe or qa", a.task));
  prompts::Grounding grounding = prompts::Grounding::kNone;
  try {
    grounding = prompts::parse_grounding(a.grounding);
  } catch (const std::invalid_argument& e) {
    fail(e.what());
  }
  if (grounding != prompts::Grounding::kNone && a.task != "qa")
    fail(fmt::format("grounding '{}' is for qa adapters; a {} adapter takes none", a.grounding,
                     a.task));
  in_range(s, "max_description_chars", a.max_description_chars, int64_t{16}, int64_t{1} << 20);
  in_range(s, "rank", a.rank, int64_t{1}, int64_t{1024});
  in_range(s, "alpha", a.alpha, 1e-6, 1e6);
  if (a.dropout < 0 || a.dropout >= 1) fail("dropout must be in [0, 1)");
  if (a.target_modules.empty()) fail("target_modules is empty");
  check_optimizer(s, a.optimizer);
  in_range(s, "epochs", a.epochs, int64_t{0}, int64_t{1000});
  in_range(s, "max_steps", a.max_steps, int64_t{0}, kMaxSteps);
  if (a.batch_size < 1 || a.gradient_accumulation < 1)
    fail("batch_size and gradient_accumulation must be at least 1");
  in_range(s, "batch_size", a.batch_size, int64_t{1}, int64_t{4096});
  in_range(s, "gradient_accumulation", a.gradient_accumulation, int64_t{1}, int64_t{4096});
  if (a.max_seq_len < 8) fail("max_seq_len must be at least 8");
  in_range(s, "max_seq_len", a.max_seq_len, int64_t{8}, int64_t{131072});
  in_range(s, "train_examples", a.train_examples, int64_t{0}, int64_t{1} << 40);
  in_range(s, "validation_examples", a.validation_examples, int64_t{0}, int64_t{1} << 40);
  in_range(s, "eval_every", a.eval_every, int64_t{0}, kMaxSteps);
  in_range(s, "checkpoint_every", a.checkpoint_every, int64_t{0}, kMaxSteps);
  in_range(s, "patience", a.patience, int64_t{0}, int64_t{1000000});
  if (a.epochs < 1 && a.max_steps < 1) fail("set epochs or max_steps");
}

void check_run(const TrainConfig& c) {
  in_range("train", "threads", c.threads, 0, 1024);
  in_range("train", "memory_limit_gb", c.memory_limit_gb, 0.0, 1e6);
  try {
    if (models::parse_base_dtype(c.base_dtype) == models::BaseDtype::kInt8) {
      throw std::invalid_argument(
          "base_dtype 'int8': int8 weights are for serving (LoRA trains on f32 or bf16)");
    }
    parse_checkpointing(c.activation_checkpointing);
    parse_end_token_setting(c.end_token);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(fmt::format("config '{}'", e.what()));
  }
  const ClassifierTrainConfig& k = c.classifier;
  in_range("classifier", "buckets", k.buckets, int64_t{16}, int64_t{1} << 26);
  in_range("classifier", "dim", k.dim, int64_t{1}, int64_t{4096});
  in_range("classifier", "epochs", k.epochs, int64_t{1}, int64_t{1000});
  in_range("classifier", "batch_size", k.batch_size, int64_t{1}, int64_t{65536});
  if (!(k.learning_rate > 0 && k.learning_rate <= 10)) {
    throw std::invalid_argument(
        fmt::format("config 'classifier.learning_rate': {} is not in (0, 10]", k.learning_rate));
  }
  in_range("classifier", "feature_set", k.feature_set, 1, 2);
  in_range("classifier", "generated_questions", k.generated.questions_per_title, 0, 100);
  in_range("classifier", "generated_titles", k.generated.titles_per_title, 0, 100);
  in_range("classifier", "generated_portuguese_share", k.generated.portuguese_share, 0.0, 1.0);
  in_range("classifier", "without_evidence_share", k.generated.without_evidence_share, 0.0, 1.0);
  in_range("classifier", "max_generated_titles", k.generated.max_titles, int64_t{0},
           int64_t{1} << 40);
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
  // The same questions with the product's title and description before
  // them: longer prompts, so longer rows, and two epochs to keep the run short.
  AdapterTrainConfig qa_grounded = qa;
  qa_grounded.grounding = "description";
  qa_grounded.max_description_chars = 200;
  qa_grounded.max_seq_len = 384;
  qa_grounded.epochs = 2;
  c.adapters["describe"] = describe;
  c.adapters["qa"] = qa;
  c.adapters["qa_grounded"] = qa_grounded;
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
  check_run(c);
  for (const auto& [name, a] : c.adapters) check(name, a);
}

void check_adapter_name(const std::string& name) {
  const bool ok =
      !name.empty() && name.size() <= 64 &&
      std::all_of(name.begin(), name.end(),
                  [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
                  }) &&
      name.front() != '_' && name.front() != '-';
  if (!ok) {
    throw std::invalid_argument(
        fmt::format("config 'adapters': adapter name '{}' is not [a-z0-9][a-z0-9_-]* (at most 64 "
                    "characters): names become directories and may not leave the adapters folder",
                    utf8::printable(name)));
  }
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

prompts::PromptFormat prompt_format_of(const AdapterTrainConfig& config) {
  return {.task = prompts::parse_task(config.task),
          .qa = {.grounding = prompts::parse_grounding(config.grounding),
                 .max_description_chars = static_cast<size_t>(config.max_description_chars)},
          .end = {}};
}

Json adapter_train_config_to_json(const AdapterTrainConfig& config) {
  AdapterTrainConfig a = config;
  ConfigBinder b(nullptr, "adapters");
  bind_adapter(b, a);
  return b.take();
}

}  // namespace vitrine::training
