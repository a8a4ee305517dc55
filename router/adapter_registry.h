// The adapters the daemon serves: for each configured name (describe, qa),
// the newest version in the adapters directory, attached to the engine's
// model in a slot of its own.
//
// A version is <dir>/<name>/v<N>/ (what the trainer service publishes) or
// <dir>/<name>/ itself holding adapter_config.json (a `vitrine train` run's
// adapters/, version 0). reload() attaches newer versions in new slots and
// makes them current; a request holds the version it started with (a
// shared_ptr) until it ends, and collect() detaches a replaced version's
// slot only once nobody holds it, so in-flight requests finish on the
// version they started with. A version that fails to load is reported and
// the current one stays. Each version carries the prompt format it was
// trained with (prompts/prompt_format.h), read when it is loaded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "models/engine.h"
#include "prompts/prompt_format.h"

namespace vitrine::router {

struct LoadedAdapter {
  std::string name;
  int64_t version = 0;
  std::filesystem::path path;
  int slot = 0;
  int64_t loaded_unix_ms = 0;
  prompts::PromptFormat prompt_format;  // how it was trained to be asked (its prompt_format.json)
};

class AdapterRegistry {
 public:
  AdapterRegistry(models::Engine& engine, std::filesystem::path dir,
                  std::vector<std::string> names);

  struct ReloadResult {
    std::vector<LoadedAdapter> loaded;  // versions attached by this call
    std::vector<std::string> errors;    // versions that could not be loaded, and why
  };
  // Attaches every name's newest version if it is newer than the current one.
  ReloadResult reload();
  // The current version of `name`; null when none was ever loaded. Hold it
  // for as long as a request uses its slot.
  std::shared_ptr<const LoadedAdapter> current(const std::string& name) const;
  std::vector<LoadedAdapter> list() const;
  // Detaches replaced versions nobody holds any more.
  void collect();
  const std::vector<std::string>& names() const { return names_; }

 private:
  models::Engine& engine_;
  std::filesystem::path dir_;
  std::vector<std::string> names_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const LoadedAdapter>> current_;
  std::vector<std::shared_ptr<const LoadedAdapter>> retired_;
  int next_slot_ = 0;
};

// The newest version of `name` under `dir`: (version, path), or version -1
// when there is none.
std::pair<int64_t, std::filesystem::path> newest_version(const std::filesystem::path& dir,
                                                         const std::string& name);

}  // namespace vitrine::router
