#include "models/kernels/kernel_threads.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace vitrine::models {
namespace {

using Clock = std::chrono::steady_clock;

// How long an idle worker keeps looking for the next kernel before it
// sleeps: longer than the gaps inside a decode step, short beside a step.
constexpr auto kSpin = std::chrono::microseconds(200);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// One task at a time. Its chunks are claimed through `ticket_`, which holds
// the task's number, its chunk count and the next unclaimed chunk: a worker
// decides from that one value alone, so one that arrives after its task
// ended claims nothing, and a claimed chunk keeps the task's caller waiting
// (the task's fields stay as they are until every chunk is done).
struct Ticket {
  static constexpr int kCountBits = 20;  // chunks per task: far fewer than 2^20
  static constexpr uint64_t kCountMask = (uint64_t{1} << kCountBits) - 1;

  static uint64_t make(uint64_t task, int64_t chunks) {
    return (task << (2 * kCountBits)) | (static_cast<uint64_t>(chunks) << kCountBits);
  }
  static uint64_t task(uint64_t t) { return t >> (2 * kCountBits); }
  static int64_t chunks(uint64_t t) { return static_cast<int64_t>((t >> kCountBits) & kCountMask); }
  static int64_t next(uint64_t t) { return static_cast<int64_t>(t & kCountMask); }
};

class Workers {
 public:
  static Workers& instance() {
    static Workers* workers = new Workers;  // never destroyed: its threads outlive main()
    return *workers;
  }

  // False, and nothing run, when another thread's task is running.
  bool run(int64_t begin, int64_t end, int64_t chunk_size, int threads,
           const std::function<void(int64_t, int64_t)>& f) {
    std::unique_lock<std::mutex> submit(submit_, std::try_to_lock);
    if (!submit.owns_lock()) return false;
    while (static_cast<int>(threads_.size()) < threads - 1) {
      threads_.emplace_back([this] { loop(); });
    }
    f_ = &f;
    begin_ = begin;
    end_ = end;
    chunk_size_ = chunk_size;
    chunks_ = (end - begin + chunk_size - 1) / chunk_size;
    done_.store(0, std::memory_order_relaxed);
    const uint64_t task = ++tasks_ & ((uint64_t{1} << (64 - 2 * Ticket::kCountBits)) - 1);
    ticket_.store(Ticket::make(task, chunks_), std::memory_order_release);
    task_.store(task, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    work(task);
    while (done_.load(std::memory_order_acquire) < chunks_) cpu_relax();
    return true;
  }

 private:
  // Claims and runs chunks of `task` until none is left (or the task is over).
  void work(uint64_t task) {
    for (;;) {
      uint64_t ticket = ticket_.load(std::memory_order_acquire);
      int64_t chunk = 0;
      do {
        chunk = Ticket::next(ticket);
        if (Ticket::task(ticket) != task || chunk >= Ticket::chunks(ticket)) return;
      } while (!ticket_.compare_exchange_weak(ticket, ticket + 1, std::memory_order_acq_rel));
      const int64_t first = begin_ + chunk * chunk_size_;
      (*f_)(first, std::min(end_, first + chunk_size_));
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  void loop() {
    uint64_t seen = task_.load(std::memory_order_acquire);
    for (;;) {
      Clock::time_point deadline = Clock::now() + kSpin;
      uint64_t task = 0;
      for (int spins = 1; (task = task_.load(std::memory_order_acquire)) == seen; ++spins) {
        cpu_relax();
        if (spins % 64 == 0 && Clock::now() > deadline) {
          std::unique_lock<std::mutex> lock(sleep_mutex_);
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          wake_.wait(lock, [&] { return task_.load(std::memory_order_seq_cst) != seen; });
          sleepers_.fetch_sub(1, std::memory_order_relaxed);
          deadline = Clock::now() + kSpin;
        }
      }
      seen = task;
      work(task);
    }
  }

  std::mutex submit_;  // one task at a time
  std::vector<std::thread> threads_;
  // The task: written before task_ is published, read after it is seen.
  const std::function<void(int64_t, int64_t)>* f_ = nullptr;
  int64_t begin_ = 0, end_ = 0, chunk_size_ = 1, chunks_ = 0;
  uint64_t tasks_ = 0;
  std::atomic<uint64_t> task_{0};
  std::atomic<uint64_t> ticket_{0};
  std::atomic<int64_t> done_{0};
  // Sleeping workers, woken by a new task.
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
};

}  // namespace

void kernel_parallel_for(int64_t begin, int64_t end, int64_t grain,
                         const std::function<void(int64_t, int64_t)>& f) {
  const int64_t n = end - begin;
  if (n <= 0) return;
  const int threads = at::get_num_threads();
  if (threads <= 1 || n <= grain) return f(begin, end);
  // A few chunks per thread, so that one who starts late takes fewer.
  const int64_t chunks =
      std::min<int64_t>(4 * threads, (n + grain - 1) / std::max<int64_t>(grain, 1));
  const int64_t chunk_size = (n + chunks - 1) / chunks;
  if (!Workers::instance().run(begin, end, chunk_size, threads, f)) f(begin, end);
}

}  // namespace vitrine::models
