// PrepareConfig <-> JSON: the record in stats.json, and the loader behind
// prepare.yaml (the CLI turns YAML into JSON at the edge; this file never
// sees YAML). Unknown keys are errors that name the key: a typo in a config
// must not silently fall back to a default.
#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "common/config_binder.h"
#include "dataset/prepare.h"

namespace vitrine::dataset {
namespace {

using Json = nlohmann::ordered_json;
using vitrine::ConfigBinder;

void bind_task_options(ConfigBinder& b, TaskOptions& t) {
  b.field("seed", t.seed)
      .field("qa_per_product", t.qa_per_product)
      .field("portuguese_share", t.portuguese_share)
      .field("answer_max_chars", t.answer_max_chars)
      .field("answer_min_words", t.answer_min_words)
      .field("router_questions_per_product", t.router_questions_per_product)
      .field("short_title_share", t.short_title_share)
      .field("casual_share", t.casual_share)
      .field("lead_in_share", t.lead_in_share);
}

// Visits every section of the config with a Binder. One list of keys serves
// writing (from == nullptr) and reading.
template <typename Config>
Json visit(Config& c, const nlohmann::json* root) {
  auto section = [&](const char* name) -> const nlohmann::json* {
    if (root == nullptr) return nullptr;
    static const nlohmann::json kEmpty = nlohmann::json::object();
    const auto it = root->find(name);
    if (it == root->end() || it->is_null()) return &kEmpty;
    if (!it->is_object())
      throw std::invalid_argument(fmt::format("config section '{}' must be a mapping", name));
    return &*it;
  };
  Json out = Json::object();
  {
    ConfigBinder b(section("clean"), "clean");
    b.field("decode_entities", c.clean.decode_entities)
        .field("strip_tags", c.clean.strip_tags)
        .field("remove_boilerplate", c.clean.remove_boilerplate)
        .field("remove_control_chars", c.clean.remove_control_chars)
        .field("collapse_whitespace", c.clean.collapse_whitespace)
        .field("max_content_chars", c.clean.max_content_chars)
        .field("repair_utf8", c.repair_utf8);
    b.finish_reading();
    out["clean"] = b.take();
  }
  {
    ConfigBinder b(section("filter"), "filter");
    b.field("min_title_chars", c.filter.min_title_chars)
        .field("max_title_chars", c.filter.max_title_chars)
        .field("min_content_chars", c.filter.min_content_chars)
        .field("drop_content_equal_to_title", c.filter.drop_content_equal_to_title)
        .field("drop_duplicates", c.filter.drop_duplicates)
        .field("drop_duplicate_uids", c.filter.drop_duplicate_uids);
    b.finish_reading();
    out["filter"] = b.take();
  }
  {
    ConfigBinder b(section("split"), "split");
    b.field("validation_ratio", c.split.validation_ratio)
        .field("test_ratio", c.split.test_ratio)
        .field("seed", c.split.seed);
    b.finish_reading();
    out["split"] = b.take();
  }
  {
    ConfigBinder b(section("tasks"), "tasks");
    bind_task_options(b, c.tasks);
    b.finish_reading();
    out["tasks"] = b.take();
  }
  {
    ConfigBinder b(section("catalog"), "catalog");
    b.field("index_content", c.catalog.index_content)
        .field("page_size", c.catalog.page_size)
        .field("cache_mib", c.catalog.cache_mib)
        .field("index_memory_mib", c.catalog.index_memory_mib);
    b.finish_reading();
    out["catalog"] = b.take();
  }
  {
    ConfigBinder b(section("run"), "run");
    b.field("threads", c.threads)
        .field("block_bytes", c.block_bytes)
        .field("examples_per_rule", c.examples_per_rule)
        .field("malformed_examples", c.malformed_examples);
    b.finish_reading();
    out["run"] = b.take();
  }
  if (root != nullptr) {
    for (const auto& [key, _] : root->items()) {
      if (key != "clean" && key != "filter" && key != "split" && key != "tasks" &&
          key != "catalog" && key != "run") {
        throw std::invalid_argument(fmt::format(
            "unknown config section '{}' (known: clean, filter, split, tasks, catalog, run)", key));
      }
    }
  }
  return out;
}

}  // namespace

Json config_to_json(const PrepareConfig& config) {
  PrepareConfig copy = config;
  return visit(copy, nullptr);
}

void apply_config_json(const nlohmann::json& json, PrepareConfig& config) {
  if (json.is_null()) return;
  if (!json.is_object())
    throw std::invalid_argument("the prepare config must be a mapping of sections");
  PrepareConfig updated = config;
  visit(updated, &json);
  validate(updated);
  config = updated;
}

void validate(const PrepareConfig& config) {
  validate(config.split);
  validate(config.tasks);
  if (config.threads < 0)
    throw std::invalid_argument("run.threads must be >= 0 (0 = number of cores)");
  if (config.block_bytes < 4096) throw std::invalid_argument("run.block_bytes must be >= 4096");
  if (config.filter.max_title_chars > 0 &&
      config.filter.max_title_chars < config.filter.min_title_chars) {
    throw std::invalid_argument(
        "filter.max_title_chars must be 0 (no limit) or >= filter.min_title_chars");
  }
  if (config.clean.max_content_chars > 0 &&
      config.clean.max_content_chars < config.filter.min_content_chars) {
    throw std::invalid_argument(
        "clean.max_content_chars must be 0 (no limit) or >= filter.min_content_chars");
  }
}

}  // namespace vitrine::dataset
