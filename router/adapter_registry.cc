#include "router/adapter_registry.h"

#include <fmt/format.h>

#include <chrono>

#include "common/clock.h"
#include "common/versions.h"
#include "models/peft_adapter.h"

namespace vitrine::router {
namespace fs = std::filesystem;

std::pair<int64_t, fs::path> newest_version(const fs::path& dir, const std::string& name) {
  const fs::path root = dir / name;
  const auto versions = versions_in(root);
  for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
    if (fs::exists(it->second / "adapter_config.json")) return *it;
  }
  if (fs::exists(root / "adapter_config.json")) return {0, root};
  return {-1, {}};
}

AdapterRegistry::AdapterRegistry(models::Engine& engine, fs::path dir,
                                 std::vector<std::string> names)
    : engine_(engine), dir_(std::move(dir)), names_(std::move(names)) {}

AdapterRegistry::ReloadResult AdapterRegistry::reload() {
  ReloadResult result;
  for (const std::string& name : names_) {
    const auto [version, path] = newest_version(dir_, name);
    if (version < 0) continue;
    {
      std::lock_guard lock(mutex_);
      const auto it = current_.find(name);
      if (it != current_.end() && it->second->version >= version) continue;
    }
    try {
      const models::PeftAdapter adapter = models::load_peft_adapter(path);
      const prompts::PromptFormat format = prompts::read_prompt_format(path);
      if (const models::Tokenizer* tokenizer = engine_.tokenizer()) {
        prompts::stop_ids(format, *tokenizer);  // throws: another base's end token
      }
      int slot = 0;
      {
        std::lock_guard lock(mutex_);
        slot = next_slot_++;
      }
      // Throws (and leaves the model as it was) when it does not fit the base.
      engine_.update_model(
          [&](models::LlamaForCausalLM& model) { models::attach_adapter(model, adapter, slot); });
      auto loaded = std::make_shared<LoadedAdapter>();
      loaded->name = name;
      loaded->version = version;
      loaded->path = path;
      loaded->slot = slot;
      loaded->loaded_unix_ms = unix_ms();
      loaded->prompt_format = format;
      result.loaded.push_back(*loaded);
      std::lock_guard lock(mutex_);
      auto& slot_of_name = current_[name];
      if (slot_of_name) retired_.push_back(slot_of_name);
      slot_of_name = std::move(loaded);
    } catch (const std::exception& e) {
      result.errors.push_back(
          fmt::format("adapter '{}' version {} ({}): {}", name, version, path.string(), e.what()));
    }
  }
  collect();
  return result;
}

std::shared_ptr<const LoadedAdapter> AdapterRegistry::current(const std::string& name) const {
  std::lock_guard lock(mutex_);
  const auto it = current_.find(name);
  return it == current_.end() ? nullptr : it->second;
}

std::vector<LoadedAdapter> AdapterRegistry::list() const {
  std::lock_guard lock(mutex_);
  std::vector<LoadedAdapter> out;
  for (const auto& [name, adapter] : current_) out.push_back(*adapter);
  return out;
}

void AdapterRegistry::collect() {
  std::vector<int> free;
  {
    std::lock_guard lock(mutex_);
    std::erase_if(retired_, [&](const std::shared_ptr<const LoadedAdapter>& a) {
      if (a.use_count() > 1) return false;  // a request still runs on it
      free.push_back(a->slot);
      return true;
    });
  }
  if (free.empty()) return;
  engine_.update_model([&](models::LlamaForCausalLM& model) {
    for (const int slot : free) models::detach_adapter(model, slot);
  });
}

}  // namespace vitrine::router
