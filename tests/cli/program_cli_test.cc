// The `vitrine` program as a whole: its version line and its exit codes
// (common/program.h), the same as vitrined's and vitrine-gateway's.
#include <gtest/gtest.h>

#include "tests/support/program_exit.h"

namespace vitrine {
namespace {

// Before, a command line that did not parse exited with CLI11's own code
// (106 for a missing required option, 109 for an unknown flag), not 2.
TEST(ProgramCli, VersionUsageErrorsAndFailuresHaveTheirExitCodes) {
  testing::expect_version_line("cli/vitrine", "vitrine");
  testing::expect_exit_codes("cli/vitrine",
                             {{"--help", 0},
                              {"", 2},
                              {"--no-such-flag", 2},
                              {"prepare --out /tmp/unused", 2},
                              {"trainer serve --listen", 2},
                              {"trainer serve --config /nonexistent/trainer.yaml", 2},
                              {"ab-report --log /nonexistent/responses.sqlite", 1}});
}

}  // namespace
}  // namespace vitrine
