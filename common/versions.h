// Versioned directories, <name>/v<N>: how the trainer service publishes
// adapters and how the daemon finds the newest one. Anything else under
// <name> (a staging directory like .v3.tmp-123, a stray file) is not a
// version.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace vitrine {

// 3 for "v3"; nothing for "v", "v3a", "3" or ".v3.tmp-1".
std::optional<int64_t> version_of(std::string_view name);

// The entries named v<N> under `dir`, oldest first (empty when `dir` is
// missing or unreadable).
std::vector<std::pair<int64_t, std::filesystem::path>> versions_in(
    const std::filesystem::path& dir);

}  // namespace vitrine
