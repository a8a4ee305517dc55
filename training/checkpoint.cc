#include "training/checkpoint.h"

#include <fmt/format.h>
#include <torch/serialize.h>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "common/atomic_output.h"
#include "common/text_file.h"

namespace vitrine::training {
namespace fs = std::filesystem;
namespace {

using Json = nlohmann::ordered_json;

// Copies the saved adapter's A and B matrices into the trainer's tensors.
void load_adapter_tensors(const fs::path& dir, const TrainableAdapter& adapter) {
  const models::PeftAdapter saved = models::load_peft_adapter(dir / "adapter");
  at::NoGradGuard no_grad;
  for (size_t m = 0; m < adapter.modules.size(); ++m) {
    const std::string& path = adapter.modules[m];
    const auto it = saved.modules.find(path);
    if (it == saved.modules.end()) {
      throw std::runtime_error(fmt::format(
          "checkpoint '{}' lacks module '{}': made with another config?", dir.string(), path));
    }
    adapter.parameters[2 * m].second.copy_(it->second.a);
    adapter.parameters[2 * m + 1].second.copy_(it->second.b);
  }
}

}  // namespace

void save_checkpoint(const fs::path& dir, LoraTrainer& trainer, const models::PeftAdapter& best,
                     const LoopState& st) {
  fs::create_directories(dir.parent_path());
  StagingDir staging(dir);
  models::save_peft_adapter(staging.path() / "adapter", snapshot(trainer.adapter()));
  models::save_peft_adapter(staging.path() / "best", best);
  torch::save(trainer.optimizer(), (staging.path() / "optimizer.pt").string());
  const Json state = {{"step", st.step},
                      {"epoch", st.epoch},
                      {"cursor", st.cursor},
                      {"best_validation_loss", std::isfinite(st.best_loss) ? st.best_loss : -1.0},
                      {"best_step", st.best_step},
                      {"evaluations_without_gain", st.evaluations_without_gain},
                      {"tokens", st.tokens}};
  write_file_atomic(staging.path() / "state.json", state.dump(2) + "\n");
  staging.commit();
}

std::optional<CheckpointDir> latest_checkpoint(const fs::path& dir) {
  std::optional<CheckpointDir> latest;
  if (!fs::exists(dir)) return latest;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("step-") || !fs::exists(entry.path() / "state.json")) continue;
    const int64_t step = std::stoll(name.substr(5));
    if (!latest || step > latest->step) latest = CheckpointDir{entry.path(), step};
  }
  return latest;
}

LoopState restore_checkpoint(const fs::path& dir, LoraTrainer& trainer, models::PeftAdapter& best) {
  const Json state = Json::parse(read_whole_file(dir / "state.json", "checkpoint"));
  LoopState st;
  st.step = state["step"];
  st.epoch = state["epoch"];
  st.cursor = state["cursor"];
  const double best_loss = state["best_validation_loss"];
  st.best_loss = best_loss < 0 ? INFINITY : best_loss;
  st.best_step = state["best_step"];
  st.evaluations_without_gain = state["evaluations_without_gain"];
  st.tokens = state["tokens"];
  load_adapter_tensors(dir, trainer.adapter());
  best = models::load_peft_adapter(dir / "best");
  torch::load(trainer.optimizer(), (dir / "optimizer.pt").string());
  trainer.set_steps_done(st.step);
  return st;
}

}  // namespace vitrine::training
