// A program's command-line contract (common/program.h): --version prints
// "<program> <project version>" and, for a build from a git checkout, the
// commit; --help and --version exit 0, a run-time failure 1, a command line
// that does not parse 2.
#pragma once

#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "tests/support/run_vitrine.h"

namespace vitrine::testing {

// True when `git describe` works on the source tree now, as it did when
// the build wrote the commit into the programs.
inline bool source_has_git_commit() {
  const std::string cmd =
      "git -C " + std::string(VITRINE_SOURCE_DIR) + " describe --always >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// `program --version` (`binary` under the build directory).
inline void expect_version_line(const std::string& binary, const std::string& program) {
  const CliRun r = run_program(binary, "--version");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::string version = VITRINE_PROJECT_VERSION;
  version = std::regex_replace(version, std::regex("\\."), "\\.");
  const std::string commit = source_has_git_commit() ? " \\([0-9a-f]{7,}(-dirty)?\\)" : "";
  EXPECT_TRUE(std::regex_match(r.output, std::regex(program + " " + version + commit + "\n")))
      << r.output;
}

struct ExpectedExit {
  std::string args;
  int exit_code;
};

// Runs `binary` with each set of arguments and checks its exit code.
inline void expect_exit_codes(const std::string& binary, const std::vector<ExpectedExit>& runs) {
  for (const ExpectedExit& run : runs) {
    const CliRun r = run_program(binary, run.args);
    EXPECT_EQ(r.exit_code, run.exit_code) << binary << " " << run.args << "\n" << r.output;
  }
}

}  // namespace vitrine::testing
