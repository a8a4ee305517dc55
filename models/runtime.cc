#include "models/runtime.h"

#include <ATen/Parallel.h>

#include <cstdlib>
#include <thread>

namespace vitrine::models {

void init_runtime(const RuntimeOptions& options) {
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0);
  const int threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(threads > 0 ? threads : 1);
}

}  // namespace vitrine::models
