#include "common/replaceable_dir.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace vitrine {
namespace fs = std::filesystem;

fs::path resolved_path(const fs::path& p) {
  std::error_code ec;
  fs::path r = fs::weakly_canonical(fs::absolute(p), ec);
  if (ec) r = fs::absolute(p).lexically_normal();
  while (!r.has_filename() && r != r.root_path()) r = r.parent_path();
  return r;
}

bool path_within(const fs::path& p, const fs::path& dir) {
  return std::mismatch(dir.begin(), dir.end(), p.begin(), p.end()).first == dir.end();
}

std::string shown_path(const fs::path& given, const fs::path& resolved) {
  if (given == resolved) return fmt::format("'{}'", given.string());
  return fmt::format("'{}' ('{}')", given.string(), resolved.string());
}

std::string quoted_names(const std::vector<std::string>& names) {
  std::string out;
  const size_t shown = std::min<size_t>(names.size(), 5);
  for (size_t i = 0; i < shown; ++i) {
    if (i > 0) out += ", ";
    out += fmt::format("'{}'", names[i]);
  }
  if (names.size() > shown) out += fmt::format(" and {} more", names.size() - shown);
  return out;
}

void refuse_current_dir_within(const fs::path& out, const std::string& shown,
                               const OwnedDirKind& kind) {
  const fs::path cwd = resolved_path(fs::current_path());
  if (!path_within(cwd, out)) return;
  throw std::runtime_error(fmt::format(
      "output directory {} is {}the current directory: {} replaces the whole output "
      "directory, which would delete the directory you are in and everything in it; write to a "
      "new directory instead (e.g. '{}')",
      shown, out == cwd ? "" : "a parent of ", kind.program, kind.example));
}

void refuse_unless_replaceable(const fs::path& out, const std::string& shown,
                               const OwnedDirKind& kind) {
  const fs::file_status status = fs::status(out);
  if (!fs::exists(status)) return;
  if (!fs::is_directory(status)) {
    throw std::runtime_error(
        fmt::format("output {} exists and is not a directory: {} writes a {} "
                    "directory",
                    shown, kind.program, kind.kind));
  }
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(out)) {
    names.push_back(entry.path().filename().string());
  }
  if (names.empty()) return;
  std::sort(names.begin(), names.end());
  if (!fs::exists(out / kind.marker) && !(kind.unmarked && kind.unmarked(out))) {
    throw std::runtime_error(fmt::format(
        "output directory {} is not empty and is not a {} written by vitrine {} (no {} file): it "
        "holds {}. {} replaces the whole output directory; choose a new or empty directory",
        shown, kind.kind, kind.program, kind.marker, quoted_names(names), kind.program));
  }
  std::vector<std::string> foreign;
  for (const std::string& name : names) {
    if (!kind.owns(name)) foreign.push_back(name);
  }
  if (!foreign.empty()) {
    throw std::runtime_error(fmt::format(
        "output directory {} holds a {} but also {}, which {} did not write and would delete "
        "with the old {}; move them out or choose another directory",
        shown, kind.kind, quoted_names(foreign), kind.program, kind.kind));
  }
}

}  // namespace vitrine
