// Binds config structs to JSON in both directions with one list of keys:
// reading a section (YAML turned into JSON at the CLI's edge) and writing
// the record of what a run used. Unknown keys are errors that name the key:
// a typo in a config must not silently fall back to a default.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
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
        value = it->get<T>();
      } else if constexpr (std::is_integral_v<T>) {
        value = whole_number<T>(*it);
      } else if constexpr (std::is_floating_point_v<T>) {
        if (!it->is_number()) throw std::invalid_argument("expected a number");
        const double d = it->get<double>();
        if (!std::isfinite(d)) throw std::invalid_argument("expected a finite number");
        constexpr auto lowest = std::numeric_limits<T>::lowest();
        constexpr auto highest = std::numeric_limits<T>::max();
        if (d < static_cast<double>(lowest) || d > static_cast<double>(highest)) {
          throw std::invalid_argument(
              fmt::format("expected a number from {} to {}", lowest, highest));
        }
        value = static_cast<T>(d);
      } else {
        // YAML does not check encodings; the config is recorded as JSON later.
        if (!is_utf8(*it)) throw std::invalid_argument("expected UTF-8 text");
        value = it->get<T>();
      }
    } catch (const std::exception& e) {
      // The value as the config wrote it; YAML strings may hold bytes that
      // are not UTF-8, shown as U+FFFD rather than failing the message.
      const std::string got = it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      throw std::invalid_argument(
          fmt::format("config key '{}.{}': {} (got {})", path_, key, e.what(), got));
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
  // True when every string (and key) in `j` is UTF-8, so `j` can be dumped.
  static bool is_utf8(const nlohmann::json& j) {
    try {
      (void)j.dump();
      return true;
    } catch (const nlohmann::json::type_error&) {
      return false;
    }
  }

  // A JSON number that is a whole number within T's range: 2.9, 1e20 for
  // an int or -1 for an unsigned are errors, never silently cut.
  template <typename T>
  static T whole_number(const nlohmann::json& j) {
    if (!j.is_number()) throw std::invalid_argument("expected a whole number");
    constexpr double kLow = static_cast<double>(std::numeric_limits<T>::min());
    constexpr double kHigh = static_cast<double>(std::numeric_limits<T>::max());
    if (j.is_number_float()) {
      const double d = j.get<double>();
      if (!std::isfinite(d) || d != std::floor(d)) {
        throw std::invalid_argument("expected a whole number");
      }
      // kHigh rounds up to a power of two for 64-bit T: that value is out too.
      if (d < kLow || d >= kHigh + 1.0 || (sizeof(T) == 8 && d >= kHigh)) {
        throw std::invalid_argument(fmt::format("expected a whole number from {} to {}",
                                                std::numeric_limits<T>::min(),
                                                std::numeric_limits<T>::max()));
      }
      return static_cast<T>(d);
    }
    if (j.is_number_unsigned()) {
      const auto u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
        throw std::invalid_argument(
            fmt::format("expected a whole number from 0 to {}", std::numeric_limits<T>::max()));
      }
      return static_cast<T>(u);
    }
    const auto i = j.get<int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
      if (i < 0) throw std::invalid_argument("expected a number >= 0");
      if (static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
        throw std::invalid_argument(
            fmt::format("expected a whole number from 0 to {}", std::numeric_limits<T>::max()));
      }
    } else {
      if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          i > static_cast<int64_t>(std::numeric_limits<T>::max())) {
        throw std::invalid_argument(fmt::format("expected a whole number from {} to {}",
                                                std::numeric_limits<T>::min(),
                                                std::numeric_limits<T>::max()));
      }
    }
    return static_cast<T>(i);
  }

  const nlohmann::json* from_;
  std::string path_;
  std::vector<std::string> seen_;
  nlohmann::ordered_json out_ = nlohmann::ordered_json::object();
};

}  // namespace vitrine
