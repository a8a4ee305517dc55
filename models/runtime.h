// Process-wide settings of the libtorch runtime: threads and device.
//
// OpenMP reads OMP_WAIT_POLICY once, when its runtime starts, so
// init_runtime() must run before the first libtorch call of the process
// (first thing in main()). PASSIVE stops idle OpenMP threads from spinning
// against OpenBLAS's own threads for the same cores. Not a goal: per-model
// thread pools.
#pragma once

#include <string>

namespace vitrine::models {

struct RuntimeOptions {
  int threads = 0;             // intra-op threads for torch; 0 = number of cores
  std::string device = "cpu";  // "cpu", "cuda", "cuda:1": where tensors live; a CUDA build of libtorch runs unchanged
};

// Sets OMP_WAIT_POLICY=PASSIVE (unless the user set it) and torch's thread count.
void init_runtime(const RuntimeOptions& options);

}  // namespace vitrine::models
