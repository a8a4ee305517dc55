// Binds config structs to JSON in both directions with one list of keys:
// reading a section (YAML turned into JSON at the CLI's edge) and writing
// the record of what a run used. Unknown keys are errors that name the key:
// a typo in a config must not silently fall back to a default.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace vitrine {

// Binds config fields to JSON keys in both directions.
class ConfigBinder {
 public:
  // Reading mode: `from` is the section to read, `path` its dotted name.
  ConfigBinder(const nlohmann::json* from, std::string path)
      : from_(from), path_(std::move(path)) {}

  template <typename T>
  ConfigBinder& field(const char* key, T& value) {
    if (from_ == nullptr) {
      out_[key] = value;
      return *this;
    }
    seen_.push_back(key);
    const auto it = from_->find(key);
    if (it == from_->end() || it->is_null()) return *this;
    try {
      if constexpr (std::is_same_v<T, bool>) {
        if (!it->is_boolean()) throw std::invalid_argument("expected true or false");
      } else if constexpr (std::is_arithmetic_v<T>) {
        if (!it->is_number()) throw std::invalid_argument("expected a number");
        if constexpr (std::is_unsigned_v<T>) {
          if (it->get<double>() < 0) throw std::invalid_argument("expected a number >= 0");
        }
      }
      value = it->get<T>();
    } catch (const std::exception& e) {
      throw std::invalid_argument(
          fmt::format("config key '{}.{}': {} (got {})", path_, key, e.what(), it->dump()));
    }
    return *this;
  }

  // Errors on keys of the section that no field() claimed.
  void finish_reading() const {
    if (from_ == nullptr) return;
    for (const auto& [key, _] : from_->items()) {
      if (std::find(seen_.begin(), seen_.end(), key) == seen_.end()) {
        std::string known;
        for (const auto& k : seen_) known += (known.empty() ? "" : ", ") + k;
        throw std::invalid_argument(
            fmt::format("unknown config key '{}.{}' (known keys there: {})", path_, key, known));
      }
    }
  }
  nlohmann::ordered_json take() { return std::move(out_); }

 private:
  const nlohmann::json* from_;
  std::string path_;
  std::vector<std::string> seen_;
  nlohmann::ordered_json out_ = nlohmann::ordered_json::object();
};

}  // namespace vitrine
