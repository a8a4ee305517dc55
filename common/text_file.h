// Small files read whole: certificates, token lists, tokenizer.json, run
// and checkpoint records. Errors name what the file is for (`what`, e.g.
// "tls.cert", "checkpoint") and the path. Not for data files (those stream).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine {

// The file's bytes. Throws std::runtime_error "<what>: cannot read '<path>'".
std::string read_whole_file(const std::filesystem::path& path, std::string_view what);

// One token per line, in the file's order, surrounding blanks trimmed; blank
// lines and lines starting with '#' are skipped. Throws std::runtime_error
// naming `what` and the path when the file cannot be read or holds no token.
std::vector<std::string> read_token_file(const std::filesystem::path& path, std::string_view what);

}  // namespace vitrine
