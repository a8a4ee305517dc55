// Appending JSON strings to a buffer, fast: the task files are gigabytes.
//
// Input must be valid UTF-8 (the cleaner guarantees it); non-ASCII is written
// as UTF-8, control characters, '"' and '\\' are escaped. Not a goal: a JSON
// DOM (use nlohmann::json for small documents such as stats.json).
#pragma once

#include <string>
#include <string_view>

namespace vitrine {

// Appends `text` as a quoted JSON string to `out`.
void append_json_string(std::string& out, std::string_view text);

// Appends `"key":` to `out` (key is trusted ASCII without escapes).
inline void append_json_key(std::string& out, std::string_view key) {
  out.push_back('"');
  out.append(key);
  out.append("\":");
}

}  // namespace vitrine
