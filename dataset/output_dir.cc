#include "dataset/output_dir.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/atomic_output.h"
#include "common/text_file.h"
#include "dataset/line_reader.h"

namespace vitrine::dataset {
namespace fs = std::filesystem;
namespace {

// The top-level entries a dataset directory may hold: what prepare writes,
// and the files SQLite may put beside the catalogue.
constexpr std::array<std::string_view, 9> kDatasetEntries = {
    kDatasetMarker,       "catalog.sqlite",     "catalog.sqlite-journal",
    "catalog.sqlite-wal", "catalog.sqlite-shm", "tasks",
    "stats.json",         "report.md",          "clean.jsonl"};

// Absolute, with symlinks, "." and ".." resolved as far as the path exists,
// and no trailing separator. A link that leads nowhere on disk (/dev/stdin
// to "pipe:[123]") stays as spelled.
fs::path resolved(const fs::path& p) {
  std::error_code ec;
  fs::path r = fs::weakly_canonical(fs::absolute(p), ec);
  if (ec) r = fs::absolute(p).lexically_normal();
  while (!r.has_filename() && r != r.root_path()) r = r.parent_path();
  return r;
}

// `p` is `dir` or lies under it (both resolved).
bool is_within(const fs::path& p, const fs::path& dir) {
  return std::mismatch(dir.begin(), dir.end(), p.begin(), p.end()).first == dir.end();
}

// "'d' ('/abs/d')" when the spelling differs from the resolved path.
std::string shown(const fs::path& given, const fs::path& resolved_path) {
  if (given == resolved_path) return fmt::format("'{}'", given.string());
  return fmt::format("'{}' ('{}')", given.string(), resolved_path.string());
}

// "'a', 'b' and 3 more".
std::string name_list(const std::vector<std::string>& names) {
  std::string out;
  const size_t shown_names = std::min<size_t>(names.size(), 5);
  for (size_t i = 0; i < shown_names; ++i) {
    if (i > 0) out += ", ";
    out += fmt::format("'{}'", names[i]);
  }
  if (names.size() > shown_names) out += fmt::format(" and {} more", names.size() - shown_names);
  return out;
}

void check_not_current_dir(const fs::path& out, const std::string& out_shown) {
  const fs::path cwd = resolved(fs::current_path());
  if (!is_within(cwd, out)) return;
  throw std::runtime_error(fmt::format(
      "output directory {} is {}the current directory: prepare replaces the whole output "
      "directory, which would delete the directory you are in and everything in it; write to a "
      "new directory instead (e.g. 'dataset')",
      out_shown, out == cwd ? "" : "a parent of "));
}

// Refuses an output that holds the input's bytes or its name (a link to it).
void check_input_outside(const fs::path& out, const std::string& out_shown, const fs::path& input) {
  // Standard input redirected from a file (`-i - < d/trn.json`) is that file.
  const fs::path source = is_standard_input(input) ? fs::path("/dev/stdin") : input;
  const fs::path named = fs::absolute(source);
  const std::array<fs::path, 2> places = {resolved(named.parent_path()) / named.filename(),
                                          resolved(source)};
  for (const fs::path& place : places) {
    if (place == out) {
      throw std::runtime_error(fmt::format(
          "output {} is the input file: the output is the dataset directory to write", out_shown));
    }
    if (!is_within(place, out)) continue;
    throw std::runtime_error(fmt::format(
        "output directory {} contains the input {}: prepare replaces the whole output "
        "directory, so the input would be deleted with it; write the dataset to a directory that "
        "does not hold the input",
        out_shown, shown(input, place)));
  }
}

// A dataset of a version before the marker: vitrine's stats.json beside
// catalog.sqlite and tasks/, or beside clean.jsonl.
bool is_unmarked_dataset(const fs::path& dir) {
  const bool full = fs::is_regular_file(dir / "catalog.sqlite") && fs::is_directory(dir / "tasks");
  if (!full && !fs::is_regular_file(dir / "clean.jsonl")) return false;
  if (!fs::is_regular_file(dir / "stats.json")) return false;
  const nlohmann::json stats = nlohmann::json::parse(
      read_whole_file(dir / "stats.json", "previous dataset"), nullptr, false);
  return stats.is_object() && stats.contains("vitrine") && stats["vitrine"].is_object() &&
         stats["vitrine"].contains("dataset_format");
}

// Refuses an existing output that is not an empty directory or a dataset
// made only of prepare's files.
void check_replaceable(const fs::path& out, const std::string& out_shown) {
  const fs::file_status status = fs::status(out);
  if (!fs::exists(status)) return;
  if (!fs::is_directory(status)) {
    throw std::runtime_error(fmt::format(
        "output {} exists and is not a directory: prepare writes a dataset directory", out_shown));
  }
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(out)) {
    names.push_back(entry.path().filename().string());
  }
  if (names.empty()) return;
  std::sort(names.begin(), names.end());
  if (!fs::exists(out / std::string(kDatasetMarker)) && !is_unmarked_dataset(out)) {
    throw std::runtime_error(fmt::format(
        "output directory {} is not empty and is not a dataset written by vitrine prepare (no "
        "{} file): it holds {}. prepare replaces the whole output directory; choose a new or "
        "empty directory",
        out_shown, kDatasetMarker, name_list(names)));
  }
  std::vector<std::string> foreign;
  for (const std::string& name : names) {
    if (std::find(kDatasetEntries.begin(), kDatasetEntries.end(), name) == kDatasetEntries.end())
      foreign.push_back(name);
  }
  if (!foreign.empty()) {
    throw std::runtime_error(fmt::format(
        "output directory {} holds a dataset but also {}, which prepare did not write and would "
        "delete with the old dataset; move them out or choose another directory",
        out_shown, name_list(foreign)));
  }
}

}  // namespace

fs::path resolve_output_dir(const fs::path& out_dir, const fs::path& input) {
  if (out_dir.empty()) throw std::runtime_error("no output directory given");
  const fs::path out = resolved(out_dir);
  const std::string out_shown = shown(out_dir, out);
  check_not_current_dir(out, out_shown);
  check_input_outside(out, out_shown, input);
  check_replaceable(out, out_shown);
  return out;
}

void write_dataset_marker(const fs::path& dir) {
  write_file_atomic(dir / std::string(kDatasetMarker),
                    "A dataset written by `vitrine prepare`: the next prepare into this directory "
                    "replaces it whole.\n");
}

}  // namespace vitrine::dataset
