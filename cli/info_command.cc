// `vitrine info`: what this build and machine run models with, as JSON —
// for bug reports and for checking a deployment.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/program.h"
#include "models/runtime.h"

namespace vitrine::cli {

Command add_info_command(CLI::App& app) {
  CLI::App* cmd =
      app.add_subcommand("info", "Print the model runtime's settings and capabilities as JSON");
  return Command{cmd, [] {
                   models::init_runtime({});
                   const models::RuntimeFacts facts = models::runtime_facts();
                   const nlohmann::ordered_json j = {
                       {"version", project_version()},
                       {"threads", facts.threads},
                       {"omp_wait_policy", facts.omp_wait_policy},
                       {"avx2", facts.avx2},
                       {"avx512", facts.avx512},
                       {"cuda", facts.cuda},
                       {"transparent_huge_pages", facts.transparent_huge_pages},
                   };
                   std::puts(j.dump(2).c_str());
                   return 0;
                 }};
}

}  // namespace vitrine::cli
