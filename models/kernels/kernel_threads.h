// The threads the hand-written kernels (packed_linear, small_linear, decode
// attention) split their work over.
//
// A decode step calls some hundred short kernels (tens of microseconds each)
// with a little other work between them. Through OpenMP, under the
// OMP_WAIT_POLICY=PASSIVE the runtime sets, every call wakes the other
// threads from sleep, and in this virtual machine a wake-up costs about as
// much as a kernel (a 20m batch-8 step: 4.1 to 4.9 ms passive against 3.0 to
// 3.4 ms with OpenMP spinning). These workers instead wait for the next
// kernel by spinning for a short while (200 µs) before they sleep, so
// the calls of one step find them awake, and an idle process still sleeps:
// the waiting is bounded, unlike OpenMP's active policy, which spins against
// OpenBLAS's threads for the whole run.
#pragma once

#include <cstdint>
#include <functional>

namespace vitrine::models {

// Calls f(chunk_begin, chunk_end) over [begin, end) in chunks of at least
// `grain` items, on the calling thread and on at::get_num_threads() - 1
// workers; returns when every chunk is done. Runs on the calling thread
// alone when the range is within one grain, when one thread is set, or when
// another thread is using the workers. f must not throw.
void kernel_parallel_for(int64_t begin, int64_t end, int64_t grain,
                         const std::function<void(int64_t, int64_t)>& f);

}  // namespace vitrine::models
