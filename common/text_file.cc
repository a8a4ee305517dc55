#include "common/text_file.h"

#include <fmt/format.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

namespace vitrine {

std::string read_whole_file(const std::filesystem::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  std::error_code ignored;
  if (!in || std::filesystem::is_directory(path, ignored)) {
    throw std::runtime_error(fmt::format("{}: cannot read '{}'", what, path.string()));
  }
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> read_token_file(const std::filesystem::path& path, std::string_view what) {
  std::istringstream lines(read_whole_file(path, what));
  std::vector<std::string> tokens;
  for (std::string line; std::getline(lines, line);) {
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    tokens.push_back(line.substr(first, line.find_last_not_of(" \t\r") - first + 1));
  }
  if (tokens.empty()) {
    throw std::runtime_error(fmt::format("{}: '{}' holds no token", what, path.string()));
  }
  return tokens;
}

}  // namespace vitrine
