// The order-restoring pipeline of `prepare`: reader -> workers -> consumer.
//
// One thread reads blocks of lines (LineReader), `workers` threads clean them
// (BlockCleaner) in any order, and the consumer takes the batches back with
// next() strictly in file order, so what it writes does not depend on the
// thread count. At most 2 * workers + 2 blocks are in flight, which bounds
// memory whatever the file size; blocks and batches are recycled. The first
// exception of any thread stops the others and is rethrown by next(). Not a
// goal: more than one consumer.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/stable_hash.h"
#include "dataset/block_cleaner.h"
#include "dataset/line_reader.h"
#include "dataset/prepare.h"

namespace vitrine::dataset {

class Pipeline {
 public:
  Pipeline(LineReader& reader, const PrepareConfig& config, int workers);
  ~Pipeline() { stop(); }
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  void start();
  // The next batch in file order; false at the end. Rethrows worker errors.
  // `batch`'s previous buffers go back to the workers for reuse.
  bool next(Batch& batch);
  // Joins the threads; safe to call twice.
  void stop();

  uint64_t file_position() const { return file_position_.load(std::memory_order_relaxed); }
  uint64_t lines_read() const { return lines_read_.load(std::memory_order_relaxed); }
  // XXH3-128 of every byte of line data read, as hex.
  std::string fingerprint() const { return fingerprint_.hex(); }
  double worker_cpu() const { return worker_cpu_; }

 private:
  template <typename F>
  void guard(F&& f);
  void read_loop();
  void work_loop();

  LineReader& reader_;
  const PrepareConfig& config_;
  const int workers_;
  const size_t max_in_flight_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<LineBlock> work_;
  std::vector<LineBlock> free_blocks_;
  std::vector<Batch> free_batches_;
  std::map<uint64_t, Batch> done_;
  size_t in_flight_ = 0;
  uint64_t blocks_read_ = 0;
  uint64_t next_sequence_ = 0;
  bool reader_done_ = false;
  bool stopping_ = false;
  std::exception_ptr error_;
  StreamingHash128 fingerprint_;
  std::atomic<uint64_t> file_position_{0};
  std::atomic<uint64_t> lines_read_{0};
  double worker_cpu_ = 0;
};

}  // namespace vitrine::dataset
