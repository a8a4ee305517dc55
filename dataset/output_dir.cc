#include "dataset/output_dir.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/atomic_output.h"
#include "common/replaceable_dir.h"
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

// Refuses an output that holds the input's bytes or its name (a link to it).
void check_input_outside(const fs::path& out, const std::string& out_shown, const fs::path& input) {
  // Standard input redirected from a file (`-i - < d/trn.json`) is that file.
  const fs::path source = is_standard_input(input) ? fs::path("/dev/stdin") : input;
  const fs::path named = fs::absolute(source);
  const std::array<fs::path, 2> places = {resolved_path(named.parent_path()) / named.filename(),
                                          resolved_path(source)};
  for (const fs::path& place : places) {
    if (place == out) {
      throw std::runtime_error(fmt::format(
          "output {} is the input file: the output is the dataset directory to write", out_shown));
    }
    if (!path_within(place, out)) continue;
    throw std::runtime_error(fmt::format(
        "output directory {} contains the input {}: prepare replaces the whole output "
        "directory, so the input would be deleted with it; write the dataset to a directory that "
        "does not hold the input",
        out_shown, shown_path(input, place)));
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

const OwnedDirKind& dataset_dir_kind() {
  static const OwnedDirKind kind{.program = "prepare",
                                 .kind = "dataset",
                                 .marker = std::string(kDatasetMarker),
                                 .example = "dataset",
                                 .owns =
                                     [](std::string_view name) {
                                       return std::find(kDatasetEntries.begin(),
                                                        kDatasetEntries.end(),
                                                        name) != kDatasetEntries.end();
                                     },
                                 .unmarked = is_unmarked_dataset};
  return kind;
}

}  // namespace

fs::path resolve_output_dir(const fs::path& out_dir, const fs::path& input) {
  if (out_dir.empty()) throw std::runtime_error("no output directory given");
  const fs::path out = resolved_path(out_dir);
  const std::string out_shown = shown_path(out_dir, out);
  refuse_current_dir_within(out, out_shown, dataset_dir_kind());
  check_input_outside(out, out_shown, input);
  refuse_unless_replaceable(out, out_shown, dataset_dir_kind());
  return out;
}

void write_dataset_marker(const fs::path& dir) {
  write_file_atomic(dir / std::string(kDatasetMarker),
                    "A dataset written by `vitrine prepare`: the next prepare into this directory "
                    "replaces it whole.\n");
}

}  // namespace vitrine::dataset
