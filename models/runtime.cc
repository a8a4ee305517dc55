#include "models/runtime.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <fmt/format.h>
#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <thread>

namespace vitrine::models {

void reexec_with_passive_wait_policy(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/1);
  ::execv("/proc/self/exe", argv);
  // Only reached when exec failed: run on, with whatever policy libgomp took.
  std::fprintf(stderr,
               "warning: could not restart with OMP_WAIT_POLICY=PASSIVE (%s); set it "
               "before starting for full speed\n",
               std::strerror(errno));
}

void init_runtime(const RuntimeOptions& options) {
  ::mallopt(M_MMAP_THRESHOLD, 512 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 1024 << 20);
  const int threads =
      options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(threads > 0 ? threads : 1);
  // The BLAS behind libtorch (OpenBLAS, through libblas.so.3) keeps its own
  // thread count, all cores by default, and its idle threads spin: bound it
  // by the same setting, where the library offers the call.
  using SetThreads = void (*)(int);
  if (const auto set_blas_threads =
          reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set_blas_threads(threads > 0 ? threads : 1);
  }
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          std::getenv("VITRINE_NO_AVX2") == nullptr;
  return has;
}

bool cpu_has_avx512() {
  static const bool has = cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512vl") &&
                          std::getenv("VITRINE_NO_AVX512") == nullptr;
  return has;
}

RuntimeFacts runtime_facts() {
  RuntimeFacts facts;
  facts.threads = at::get_num_threads();
  if (const char* policy = std::getenv("OMP_WAIT_POLICY")) facts.omp_wait_policy = policy;
  facts.avx2 = cpu_has_avx2();
  facts.avx512 = cpu_has_avx512();
  facts.cuda = at::hasCUDA();
  // "always [madvise] never": the mode in brackets is the one in force.
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(in, line);
  const size_t open = line.find('['), close = line.find(']');
  if (open != std::string::npos && close > open) {
    facts.transparent_huge_pages = line.substr(open + 1, close - open - 1);
  }
  return facts;
}

c10::Device resolve_device(const std::string& name) {
  std::optional<c10::Device> device;
  try {
    device.emplace(name);
  } catch (const std::exception&) {
    throw std::invalid_argument(
        fmt::format("device '{}' is not a device name (expected cpu, cuda or cuda:N)", name));
  }
  if (device->is_cuda() && !at::hasCUDA()) {
    throw std::invalid_argument(
        fmt::format("device '{}': this libtorch was built without CUDA; use cpu", name));
  }
  if (!device->is_cpu() && !device->is_cuda()) {
    throw std::invalid_argument(
        fmt::format("device '{}': only cpu and cuda devices are supported", name));
  }
  return *device;
}

}  // namespace vitrine::models
