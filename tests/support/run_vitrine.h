// Runs the built `vitrine` program with arguments, as a user would.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace vitrine::testing {

struct CliRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs `program` (a path under the build directory) with arguments; `env`
// is put before it, e.g. "env -u OMP_WAIT_POLICY".
inline CliRun run_program(const std::string& program, const std::string& args,
                          const std::string& env = "") {
  const std::string cmd =
      env + " " + std::string(VITRINE_BINARY_DIR) + "/" + program + " " + args + " 2>&1";
  CliRun r;
  FILE* pipe = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline CliRun run_vitrine(const std::string& args, const std::string& env = "") {
  return run_program("cli/vitrine", args, env);
}

}  // namespace vitrine::testing
