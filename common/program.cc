#include "common/program.h"

#include <fmt/format.h>

namespace vitrine {

// Defined in the build_commit.cc that common/build_commit.cmake writes.
extern const char kBuildCommit[];

std::string_view project_version() {
  return VITRINE_VERSION;
}

std::string version_line(std::string_view program) {
  const std::string_view commit = kBuildCommit;
  return commit.empty() ? fmt::format("{} {}", program, project_version())
                        : fmt::format("{} {} ({})", program, project_version(), commit);
}

void add_version_flag(CLI::App& app, std::string_view program) {
  app.set_version_flag("--version", version_line(program));
}

int parse_error_exit(const CLI::App& app, const CLI::ParseError& e) {
  return app.exit(e) == static_cast<int>(CLI::ExitCodes::Success) ? 0 : kExitUsage;
}

}  // namespace vitrine
