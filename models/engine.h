// The serving engine: one model, a scheduler thread, continuous batching.
//
// Requests arrive from any thread and wait in a bounded queue. The
// scheduler admits them into the running batch whenever a row is free —
// the newcomers of a round prefill together (left-padded to the longest
// prompt), their first tokens are sent at once, and their keys and values
// are merged into the batch's cache, left-padded to the batch's length —
// and then decodes every running row in one forward
// per step, each row through its own adapter (or none). A row leaves the
// batch the step it finishes (eos, stop string, length), is cancelled, or
// passes its deadline, and its slot is free for the next request at once.
// Each row samples with its own generator seeded from its options, so a
// request gets exactly the tokens generate() would give it alone, whatever
// else shares the batch (a test holds the engine to that).
//
// Adapters live in the model's slots; update_model() runs a change (attach
// a new version in a new slot, remove an old one) between two steps, so no
// forward sees half a change, and slots_in_use() says which slots running
// or queued requests still need.
//
// Not goals: paged attention, preemption, priorities, chunked prefill.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string_view>
#include <thread>
#include <vector>

#include "models/engine_options.h"
#include "models/generation.h"

namespace vitrine::models {

struct EngineRequest {
  std::vector<int64_t> prompt;  // token ids, BOS included
  int adapter_slot = -1;        // -1 = the base model
  GenerationOptions options;    // sampling, seed, length, eos ids, stop strings
  // Past it the request ends with finish_reason "deadline" (max = none).
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // Set (from any thread) to end the request at the next step ("cancelled").
  std::shared_ptr<std::atomic<bool>> cancelled;
  // Called on the scheduler thread with each new id and its text; return
  // false to cancel. Keep it short: the whole batch waits for it.
  TokenCallback on_token;
  // Called on the scheduler thread once the future's result is set (to wake
  // a waiter at once). Keep it short too.
  std::function<void()> on_done;
};

struct EngineTimings {
  double queue_ms = 0;        // submitted -> prefill started
  double first_token_ms = 0;  // submitted -> first token
  double total_ms = 0;        // submitted -> finished
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
};

struct EngineResult {
  GenerationResult generation;  // finish_reason: stop, length, cancelled or deadline
  EngineTimings timings;
};

struct EngineStats {
  int64_t queued = 0;            // waiting now
  int64_t running = 0;           // rows in the batch now
  int64_t admitted = 0;          // requests prefilled since the start
  int64_t steps = 0;             // batched decode steps since the start
  int64_t tokens_generated = 0;  // since the start
};

class Engine {
 public:
  // The engine owns the model's use from now on: touch it only through
  // update_model(). The tokenizer decodes streamed text and stop strings.
  Engine(LlamaForCausalLM model, std::shared_ptr<const Tokenizer> tokenizer,
         EngineOptions options = {});
  // Ends every request ("cancelled") and stops the scheduler.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Throws ResourceExhaustedError (common/errors.h) when
  // the queue is full and std::invalid_argument for an empty or too long
  // prompt; the future throws nothing.
  std::future<EngineResult> submit(EngineRequest request);

  // Runs `change` on the scheduler thread between two steps and waits for
  // it; rethrows what it throws.
  void update_model(const std::function<void(LlamaForCausalLM&)>& change);
  // Adapter slots that queued or running requests use.
  std::set<int> slots_in_use() const;
  EngineStats stats() const;
  const EngineOptions& options() const { return options_; }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }  // null: none given

 private:
  struct Row;
  void schedule();
  void admit(std::vector<std::unique_ptr<Row>> rows);  // prefills them together
  void step();
  void retire_finished();
  void deliver(Row& row);  // fulfils the row's promise (or sets its error)
  // Picks the row's next token; an error (NaN logits, a throwing callback)
  // ends that row alone, its future then throwing the error.
  void advance_row(Row& row, const at::Tensor& logits);
  // Ends the row with the exception being handled.
  static void fail_row(Row& row);
  void end_unstarted(Row& row, const char* reason);
  TokenCallback callback_of(Row& row);

  LlamaForCausalLM model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  EngineOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Row>> queue_;
  std::deque<std::packaged_task<void()>> changes_;
  bool stopping_ = false;
  std::set<int> running_slots_;  // mirror of rows_' slots, for slots_in_use()
  EngineStats stats_;

  // Scheduler thread only.
  std::vector<std::unique_ptr<Row>> rows_;
  KvCache cache_;
  std::vector<int64_t> pad_;  // left padding of each row in cache_
  std::thread scheduler_;
};

}  // namespace vitrine::models
