// What every vitrine program's main shares (vitrine, vitrined,
// vitrine-gateway): the --version line and the exit codes.
//
// Exit codes of every program: 0 done (--help and --version included);
// kExitFailure (1) a failure at run time, with the reason: a config it
// cannot use, an address it cannot bind, a model that does not load;
// kExitUsage (2) a command line it cannot parse (an unknown flag, a missing
// or bad value, an extra argument), with CLI11's message. CLI11's own codes
// (100 to 127, one per kind of parse error) are not passed on: scripts and
// supervisors test for 2.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <string_view>

namespace vitrine {

inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// CMake's project(VERSION), e.g. "0.1.0".
std::string_view project_version();

// "vitrined 0.1.0 (3f2c9a1b7e04)": the project version, then the commit the
// build came from (`git describe --always --dirty`) when it was built in a
// git checkout.
std::string version_line(std::string_view program);

// --version on `app`: prints version_line(program) and exits 0.
void add_version_flag(CLI::App& app, std::string_view program);

// After app.parse() threw `e`: prints what CLI11 prints for it (the help,
// the version or the usage error) and returns the exit code, 0 for --help
// and --version, kExitUsage for anything else.
int parse_error_exit(const CLI::App& app, const CLI::ParseError& e);

}  // namespace vitrine
