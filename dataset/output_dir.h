// Where `prepare` may write: the output directory's safety checks.
//
// prepare replaces its output directory as a whole (StagingDir swaps the
// new dataset in and deletes the old directory), so it must never be pointed
// at a directory that holds anything else. resolve_output_dir() resolves the
// spelling (relative, ".", "..", symlinks, a trailing "/") and refuses, before
// any work: an output that is or contains the current directory, that
// contains the input (or a link to it, or the file standard input is
// redirected from), that is not a directory, or that is
// a non-empty directory other than a dataset written by prepare. A dataset is
// recognised by the marker file prepare writes into it (kDatasetMarker) or,
// for datasets of versions before the marker, by its layout: a stats.json
// that names vitrine beside catalog.sqlite and tasks/ (or beside clean.jsonl
// for --clean-only). A dataset that also holds files prepare never writes is
// refused too, so nothing but prepare's own files is ever deleted.
// Not a goal: locking against another process writing the same directory.
#pragma once

#include <filesystem>
#include <string_view>

namespace vitrine::dataset {

// A one-line file at the top of every dataset directory prepare writes.
inline constexpr std::string_view kDatasetMarker = ".vitrine-dataset";

// The absolute, symlink-free path to write the dataset to. `input` is the
// input as given. Throws std::runtime_error naming the paths when the output
// must not be replaced.
std::filesystem::path resolve_output_dir(const std::filesystem::path& out_dir,
                                         const std::filesystem::path& input);

// Writes the marker into `dir` (the staging directory of a new dataset).
void write_dataset_marker(const std::filesystem::path& dir);

}  // namespace vitrine::dataset
