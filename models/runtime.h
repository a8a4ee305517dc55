// Process-wide settings of the libtorch runtime: threads and device.
//
// OpenMP reads OMP_WAIT_POLICY once, when its runtime starts, so
// init_runtime() must run before the first libtorch call of the process
// (first thing in main()). PASSIVE stops idle OpenMP threads from spinning
// against OpenBLAS's own threads for the same cores. Not a goal: per-model
// thread pools.
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace vitrine::models {

struct RuntimeOptions {
  int threads = 0;             // intra-op threads for torch; 0 = number of cores
  std::string device = "cpu";  // "cpu", "cuda", "cuda:1": where tensors live; a CUDA build of
                               // libtorch runs unchanged
};

// The device named by `name` ("cpu", "cuda", "cuda:1", ...), checked
// against what this libtorch was built with: an unknown name or a device the
// build lacks throws std::invalid_argument saying which.
c10::Device resolve_device(const std::string& name);

// libgomp reads OMP_WAIT_POLICY when the program is loaded, before main(),
// so setting it later changes nothing: idle OpenMP threads would spin on
// the cores that OpenBLAS and the next parallel loop need (measured: batched
// decode 3x slower). When the variable is unset this sets PASSIVE and
// re-executes the program with the same arguments, once; when it is set
// (by the user, a script or the container) it returns at once. Call it
// first thing in main() of programs that run models.
void reexec_with_passive_wait_policy(char** argv);

// Sets torch's thread count and the allocator's behaviour for large
// blocks: reused from the heap instead of mapped and zeroed by the kernel
// on every forward (measured: long prefill 3.5x faster).
void init_runtime(const RuntimeOptions& options);

// Whether this CPU runs the AVX2 + FMA builds of the hand-written kernels.
// VITRINE_NO_AVX2=1 turns them off (and AVX-512 with them), to test the
// baseline builds; read once.
bool cpu_has_avx2();

// Whether it also runs the AVX-512 build of packed_linear (3 panels × 8
// rows per tile). VITRINE_NO_AVX512=1 in the environment turns it off (to test or compare
// the AVX2 build on such a CPU); read once.
bool cpu_has_avx512();

// What this process runs with, for `vitrine info` and bug reports.
struct RuntimeFacts {
  int threads = 0;
  std::string omp_wait_policy;         // as the process started with it; "" = unset
  bool avx2 = false;                   // the hand-written kernels' fast path
  bool avx512 = false;                 // packed_linear's AVX-512 build
  bool cuda = false;                   // libtorch built with CUDA and a device present
  std::string transparent_huge_pages;  // the kernel's mode: always, madvise or never
};
RuntimeFacts runtime_facts();

}  // namespace vitrine::models
