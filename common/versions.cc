#include "common/versions.h"

#include <algorithm>

namespace vitrine {

std::optional<int64_t> version_of(std::string_view name) {
  if (name.size() < 2 || name.size() > 19 || name[0] != 'v' ||
      name.find_first_not_of("0123456789", 1) != std::string_view::npos) {
    return std::nullopt;
  }
  int64_t version = 0;
  for (const char c : name.substr(1)) version = version * 10 + (c - '0');
  return version;
}

std::vector<std::pair<int64_t, std::filesystem::path>> versions_in(
    const std::filesystem::path& dir) {
  std::vector<std::pair<int64_t, std::filesystem::path>> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (const auto v = version_of(entry.path().filename().string())) {
      out.emplace_back(*v, entry.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace vitrine
