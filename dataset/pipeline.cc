#include "dataset/pipeline.h"

namespace vitrine::dataset {

Pipeline::Pipeline(LineReader& reader, const PrepareConfig& config, int workers)
    : reader_(reader),
      config_(config),
      workers_(workers),
      max_in_flight_(static_cast<size_t>(workers) * 2 + 2) {}

template <typename F>
void Pipeline::guard(F&& f) {
  try {
    f();
  } catch (...) {
    std::lock_guard lock(mu_);
    if (!error_) error_ = std::current_exception();
    cv_.notify_all();
  }
}

void Pipeline::start() {
  threads_.emplace_back([this] { guard([this] { read_loop(); }); });
  for (int i = 0; i < workers_; ++i)
    threads_.emplace_back([this] { guard([this] { work_loop(); }); });
}

bool Pipeline::next(Batch& batch) {
  std::unique_lock lock(mu_);
  if (batch.arena.capacity() > 0) {
    batch.arena.clear();
    batch.records.clear();
    batch.counters = PrepareCounters{};
    free_batches_.push_back(std::move(batch));
  }
  cv_.wait(lock, [&] {
    return error_ || done_.count(next_sequence_) ||
           (reader_done_ && next_sequence_ == blocks_read_);
  });
  if (error_) std::rethrow_exception(error_);
  auto it = done_.find(next_sequence_);
  if (it == done_.end()) return false;
  batch = std::move(it->second);
  done_.erase(it);
  ++next_sequence_;
  --in_flight_;
  cv_.notify_all();
  return true;
}

void Pipeline::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void Pipeline::read_loop() {
  for (;;) {
    LineBlock block;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || error_ || in_flight_ < max_in_flight_; });
      if (stopping_ || error_) return;
      if (!free_blocks_.empty()) {
        block = std::move(free_blocks_.back());
        free_blocks_.pop_back();
      }
    }
    const bool more = reader_.next(block);
    file_position_.store(reader_.file_position(), std::memory_order_relaxed);
    lines_read_.store(reader_.lines(), std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    if (!more) {
      reader_done_ = true;
      cv_.notify_all();
      return;
    }
    fingerprint_.update(std::string_view(block.data(), block.size));
    ++blocks_read_;
    ++in_flight_;
    work_.push_back(std::move(block));
    cv_.notify_all();
  }
}

void Pipeline::work_loop() {
  BlockCleaner cleaner(config_);
  for (;;) {
    LineBlock block;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || error_ || !work_.empty() || reader_done_; });
      if (stopping_ || error_ || work_.empty()) return;
      block = std::move(work_.front());
      work_.pop_front();
    }
    Batch batch;
    {
      std::lock_guard lock(mu_);
      if (!free_batches_.empty()) {
        batch = std::move(free_batches_.back());
        free_batches_.pop_back();
      }
    }
    cleaner.run(block, batch);
    std::lock_guard lock(mu_);
    free_blocks_.push_back(std::move(block));
    worker_cpu_ += batch.cpu_seconds;
    done_.emplace(batch.sequence, std::move(batch));
    cv_.notify_all();
  }
}

}  // namespace vitrine::dataset
