// Output directories a program writes whole and replaces whole (StagingDir
// swaps the new one in and deletes the old): the checks that keep such a
// replacement from ever deleting anything the program did not write.
//
// Paths are compared resolved (relative, ".", "..", symlinks, a trailing
// "/"), so no spelling slips past a check. A directory counts as the
// program's own when it holds the program's marker file (or an older layout
// the program recognises) and nothing but names the program writes. The
// callers add their own input checks (prepare: the input file; export: the
// base model and adapter) between the two refusals below, in the order their
// messages should win. Not a goal: locking against another process writing
// the same directory.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine {

// Absolute, with symlinks, "." and ".." resolved as far as the path exists,
// and no trailing separator. A link that leads nowhere on disk (/dev/stdin
// to "pipe:[123]") stays as spelled.
std::filesystem::path resolved_path(const std::filesystem::path& p);

// `p` is `dir` or lies under it (both resolved).
bool path_within(const std::filesystem::path& p, const std::filesystem::path& dir);

// "'d' ('/abs/d')" when the spelling differs from the resolved path, else "'d'".
std::string shown_path(const std::filesystem::path& given, const std::filesystem::path& resolved);

// "'a', 'b' and 3 more": at most five names, for messages.
std::string quoted_names(const std::vector<std::string>& names);

// What a program writes into the directories it replaces whole.
struct OwnedDirKind {
  std::string program;  // "prepare": messages name it as `vitrine prepare`
  std::string kind;     // "dataset": what such a directory holds
  std::string marker;   // file at the top of every such directory: the program's claim on it
  std::string example;  // a directory name suggested when the output must change
  // True for every top-level name the program may write (marker included).
  std::function<bool(std::string_view name)> owns;
  // Recognises a directory of an older version that has no marker; empty = none.
  std::function<bool(const std::filesystem::path& dir)> unmarked;
};

// Refuses an output (resolved) that is or contains the current directory:
// replacing it would delete the directory the user is in. `shown` is how
// messages name the output (shown_path).
void refuse_current_dir_within(const std::filesystem::path& out, const std::string& shown,
                               const OwnedDirKind& kind);

// Refuses an existing output (resolved) that is not a directory, or is a
// non-empty directory that is not `kind`'s own or also holds names the
// program never writes. Absent and empty directories pass.
void refuse_unless_replaceable(const std::filesystem::path& out, const std::string& shown,
                               const OwnedDirKind& kind);

}  // namespace vitrine
