#include "training/training_event.h"

namespace vitrine::training {
namespace {

using Json = nlohmann::ordered_json;

// The metrics.jsonl line of each kind of event, keys in the file's order.
struct LineOf {
  Json operator()(const StartEvent& e) const {
    return {{"event", "start"},
            {"adapter", e.adapter},
            {"task", e.task},
            {"train_examples", e.train_examples},
            {"train_rows", e.train_rows},
            {"truncated", e.truncated},
            {"cut_mid_sentence", e.cut_mid_sentence},
            {"ended", e.ended},
            {"end_token", e.end_token},
            {"end_token_id", e.end_token_id},
            {"dropped_long_prompt", e.dropped_long_prompt},
            {"validation_examples", e.validation_examples},
            {"world_size", e.world_size},
            {"rows_per_step", e.rows_per_step},
            {"total_steps", e.total_steps}};
  }
  Json operator()(const ResumeEvent& e) const {
    return {{"event", "resume"}, {"adapter", e.adapter}, {"step", e.step}};
  }
  Json operator()(const StepEvent& e) const {
    return {{"event", "step"},
            {"adapter", e.adapter},
            {"step", e.step},
            {"epoch", e.epoch},
            {"loss", e.loss},
            {"learning_rate", e.learning_rate},
            {"grad_norm", e.grad_norm},
            {"tokens", e.tokens},
            {"real_tokens", e.real_tokens},
            {"tokens_per_second", e.tokens_per_second},
            {"seconds", e.seconds},
            {"eta_seconds", e.eta_seconds}};
  }
  Json operator()(const EvalEvent& e) const {
    return {{"event", "eval"},
            {"adapter", e.adapter},
            {"step", e.step},
            {"validation_loss", e.validation_loss},
            {"validation_perplexity", e.validation_perplexity},
            {"validation_targets", e.validation_targets}};
  }
  Json operator()(const DoneEvent& e) const {
    return {{"event", "done"}, {"adapter", e.record.adapter}, {"record", to_json(e.record)}};
  }
  Json operator()(const ClassifierEvent& e) const {
    const ClassifierReport& r = e.report;
    return {{"event", "classifier"},
            {"test_accuracy", r.test_accuracy},
            {"test_hard", r.test_hard},
            {"test_hard_accuracy", r.test_hard_accuracy},
            {"validation_accuracy", r.validation_accuracy},
            {"microseconds_per_decision", r.microseconds_per_decision}};
  }
};

// The TensorBoard scalars of each kind of event, in the order written.
struct ScalarsOf {
  std::vector<Scalar> operator()(const StepEvent& e) const {
    return {{e.adapter + "/loss", e.loss, e.step},
            {e.adapter + "/learning_rate", e.learning_rate, e.step},
            {e.adapter + "/grad_norm", e.grad_norm, e.step},
            {e.adapter + "/tokens_per_second", e.tokens_per_second, e.step}};
  }
  std::vector<Scalar> operator()(const EvalEvent& e) const {
    return {{e.adapter + "/validation_loss", e.validation_loss, e.step},
            {e.adapter + "/validation_perplexity", e.validation_perplexity, e.step}};
  }
  template <typename Other>
  std::vector<Scalar> operator()(const Other&) const {
    return {};
  }
};

}  // namespace

Json to_json(const AdapterRecord& r) {
  return {{"adapter", r.adapter},
          {"task", r.task},
          {"fingerprints",
           {{"base_model", r.fingerprints.base_model}, {"dataset", r.fingerprints.dataset}}},
          {"seed", r.seed},
          {"steps", r.steps},
          {"best_step", r.best_step},
          {"best_validation_loss", r.best_validation_loss},
          {"best_validation_perplexity", r.best_validation_perplexity},
          {"last_train_loss", r.last_train_loss},
          {"stopped_early", r.stopped_early},
          {"cancelled", r.cancelled},
          {"tokens_per_second", r.tokens_per_second},
          {"data_parallel",
           {{"world_size", r.world_size},
            {"rows_per_step", r.rows_per_step},
            {"replicas_max_difference", r.replicas_max_difference}}},
          {"config", adapter_train_config_to_json(r.config)}};
}

Json to_json(const TrainingEvent& event) {
  return std::visit(LineOf{}, event);
}

std::vector<Scalar> scalars_of(const TrainingEvent& event) {
  return std::visit(ScalarsOf{}, event);
}

}  // namespace vitrine::training
