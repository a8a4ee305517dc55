// Runs one of scripts/*.py that drive the real transformers (through
// ../shared/reference's harness) for tests that compare with it. The
// scripts exit with status 3 when the reference stack is missing (no
// source trees, no torch for /usr/bin/python3): the caller then skips,
// saying what is missing. Any other failure is the script's output.
#pragma once

#include <fmt/format.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/support/temp_dir.h"

namespace vitrine::testing {

inline constexpr int kReferenceMissing = 3;  // the scripts' status without the reference

struct ReferenceRun {
  std::string skip;     // why the reference cannot run here
  std::string failure;  // the script failed for another reason
};

// Runs /usr/bin/python3 scripts/`script` `args` --shared ../shared --ref
// VITRINE_REFERENCE_SRC (empty: the environment's *_SRC variables), its
// output into `log`. Needs VITRINE_REFERENCE_SRC defined for the test file.
inline ReferenceRun run_reference_script(const std::string& script, const std::string& args,
                                         const std::filesystem::path& log) {
  const std::string command = fmt::format(
      "/usr/bin/python3 '{}/scripts/{}' {} --shared '{}' --ref '{}' > '{}' 2>&1",
      VITRINE_SOURCE_DIR, script, args, VITRINE_SHARED_DIR, VITRINE_REFERENCE_SRC, log.string());
  const int status = std::system(command.c_str());
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  const std::string output = read_file(log);
  ReferenceRun run;
  if (code == kReferenceMissing || code == 127) {
    run.skip = "transformers reference not run: " +
               (code == 127 ? std::string("/usr/bin/python3 not found") : output);
  } else if (code != 0) {
    run.failure = fmt::format("'{}' exited with {}:\n{}", command, code, output);
  }
  return run;
}

}  // namespace vitrine::testing
