#include "models/engine.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <stdexcept>

#include "common/errors.h"

namespace vitrine::models {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Adds the rows `take` of a freshly prefilled group's cache (left-padded
// by `group_pad`) to the batch's cache. Both are aligned on their last
// position: the shorter side is shifted right and its left padding grows
// by the shift, so every row's real positions end where the batch's do.
// New padding holds zeros (never attended to: a masked zero weighs
// nothing, where uninitialised memory could hold NaNs). `headroom`
// positions are left free for decoding.
void merge_rows(KvCache& batch, std::vector<int64_t>& pad, const KvCache& group,
                const std::vector<int64_t>& group_pad, const std::vector<int64_t>& take,
                int64_t headroom) {
  const int64_t n = static_cast<int64_t>(pad.size()), m = static_cast<int64_t>(take.size());
  const int64_t length = std::max(batch.length, group.length);
  const int64_t shift_batch = length - batch.length, shift_group = length - group.length;
  const int64_t capacity = std::max(length + headroom, batch.capacity());
  if (batch.k.empty()) {
    batch.k.resize(group.k.size());
    batch.v.resize(group.v.size());
  }
  const at::Tensor index =
      at::tensor(take, at::TensorOptions().dtype(at::kLong)).to(group.k[0].device());
  const bool all = m == group.k[0].size(0);  // every row of the group, in order
  auto merge = [&](at::Tensor& into, const at::Tensor& rows) {
    at::Tensor grown = at::zeros({n + m, rows.size(1), capacity, rows.size(3)}, rows.options());
    if (n > 0) {
      grown.narrow(0, 0, n)
          .narrow(2, shift_batch, batch.length)
          .copy_(into.narrow(2, 0, batch.length));
    }
    const at::Tensor taken = all ? rows : rows.index_select(0, index);
    grown.narrow(0, n, m)
        .narrow(2, shift_group, group.length)
        .copy_(taken.narrow(2, 0, group.length));
    into = grown;
  };
  for (size_t layer = 0; layer < group.k.size(); ++layer) {
    merge(batch.k[layer], group.k[layer]);
    merge(batch.v[layer], group.v[layer]);
  }
  for (int64_t& p : pad) p += shift_batch;
  for (const int64_t t : take) pad.push_back(group_pad[static_cast<size_t>(t)] + shift_group);
  batch.length = length;
}

// Keeps the rows `keep` (in order) of the batch's cache and drops the
// leading positions that are padding in every kept row.
void keep_rows(KvCache& batch, std::vector<int64_t>& pad, const std::vector<int64_t>& keep) {
  if (keep.empty()) {
    batch = KvCache();
    pad.clear();
    return;
  }
  int64_t trim = INT64_MAX;
  std::vector<int64_t> kept_pad;
  for (const int64_t r : keep) {
    trim = std::min(trim, pad[static_cast<size_t>(r)]);
    kept_pad.push_back(pad[static_cast<size_t>(r)]);
  }
  const int64_t length = batch.length - trim;
  const at::Tensor index =
      at::tensor(keep, at::TensorOptions().dtype(at::kLong)).to(batch.k[0].device());
  auto select = [&](at::Tensor& t) {
    at::Tensor out = at::zeros({static_cast<int64_t>(keep.size()), t.size(1), t.size(2), t.size(3)},
                               t.options());
    out.narrow(2, 0, length).copy_(t.index_select(0, index).narrow(2, trim, length));
    t = out;
  };
  for (size_t layer = 0; layer < batch.k.size(); ++layer) {
    select(batch.k[layer]);
    select(batch.v[layer]);
  }
  for (int64_t& p : kept_pad) p -= trim;
  pad = std::move(kept_pad);
  batch.length = length;
}

}  // namespace

struct Engine::Row {
  EngineRequest request;
  std::promise<EngineResult> promise;
  Clock::time_point submitted, started;
  std::optional<Clock::time_point> first_token;
  std::unique_ptr<Sequence> sequence;
  std::exception_ptr error;  // set: the request failed; the future throws it
};

Engine::Engine(LlamaForCausalLM model, std::shared_ptr<const Tokenizer> tokenizer,
               EngineOptions options)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), options_(options) {
  if (options_.max_batch < 1 || options_.max_queue < 0 || options_.max_prompt_tokens < 1 ||
      options_.max_new_tokens < 1) {
    throw std::invalid_argument(fmt::format(
        "engine: max_batch ({}), max_prompt_tokens ({}) and max_new_tokens ({}) must be at least "
        "1, max_queue ({}) at least 0",
        options_.max_batch, options_.max_prompt_tokens, options_.max_new_tokens,
        options_.max_queue));
  }
  model_->eval();
  scheduler_ = std::thread([this] { schedule(); });
}

Engine::~Engine() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  scheduler_.join();
}

std::future<EngineResult> Engine::submit(EngineRequest request) {
  if (request.prompt.empty()) throw std::invalid_argument("empty prompt");
  if (static_cast<int64_t>(request.prompt.size()) > options_.max_prompt_tokens) {
    throw std::invalid_argument(fmt::format("the prompt has {} tokens; the limit is {}",
                                            request.prompt.size(), options_.max_prompt_tokens));
  }
  if (tokenizer_ == nullptr && !request.options.stop_strings.empty()) {
    throw std::invalid_argument("stop strings need a tokenizer");
  }
  validate_generation_options(request.options);
  request.options.max_new_tokens =
      std::min(request.options.max_new_tokens, options_.max_new_tokens);
  auto row = std::make_unique<Row>();
  row->request = std::move(request);
  row->submitted = Clock::now();
  std::future<EngineResult> result = row->promise.get_future();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw FailedPreconditionError("the engine is stopping");
    if (static_cast<int64_t>(queue_.size()) >= options_.max_queue) {
      throw ResourceExhaustedError(fmt::format(
          "{} requests are waiting already (max_queue); try again later", queue_.size()));
    }
    queue_.push_back(std::move(row));
    stats_.queued = static_cast<int64_t>(queue_.size());
  }
  wake_.notify_all();
  return result;
}

void Engine::update_model(const std::function<void(LlamaForCausalLM&)>& change) {
  std::packaged_task<void()> task([this, &change] { change(model_); });
  std::future<void> done = task.get_future();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw FailedPreconditionError("the engine is stopping");
    changes_.push_back(std::move(task));
  }
  wake_.notify_all();
  done.get();
}

std::set<int> Engine::slots_in_use() const {
  std::lock_guard lock(mutex_);
  std::set<int> slots = running_slots_;
  for (const auto& row : queue_) slots.insert(row->request.adapter_slot);
  slots.erase(-1);
  return slots;
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

namespace {

// Whether a request has been cancelled or has passed its deadline; ends its
// sequence with the reason if so.
bool ended_from_outside(const EngineRequest& request, Sequence* sequence) {
  const char* reason = nullptr;
  if (request.cancelled && request.cancelled->load()) {
    reason = "cancelled";
  } else if (Clock::now() >= request.deadline) {
    reason = "deadline";
  }
  if (reason != nullptr && sequence != nullptr) sequence->finish(reason);
  return reason != nullptr;
}

}  // namespace

void Engine::schedule() {
  c10::InferenceMode inference;
  std::deque<std::packaged_task<void()>> changes;
  for (;;) {
    std::vector<std::unique_ptr<Row>> admitted, dropped;
    changes.clear();
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] {
        return stopping_ || !changes_.empty() || !queue_.empty() || !rows_.empty();
      });
      if (stopping_) break;
      changes.swap(changes_);
      // Queued requests cancelled or past their deadline leave at once.
      for (auto it = queue_.begin(); it != queue_.end();) {
        if (ended_from_outside((*it)->request, nullptr)) {
          dropped.push_back(std::move(*it));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
      while (rows_.size() + admitted.size() < static_cast<size_t>(options_.max_batch) &&
             !queue_.empty()) {
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      stats_.queued = static_cast<int64_t>(queue_.size());
      for (const auto& row : admitted) running_slots_.insert(row->request.adapter_slot);
    }
    for (auto& change : changes) change();  // between steps: no forward sees half of it
    for (auto& row : dropped) {
      end_unstarted(*row, row->request.cancelled && row->request.cancelled->load() ? "cancelled"
                                                                                   : "deadline");
    }
    if (!admitted.empty()) admit(std::move(admitted));
    if (!rows_.empty()) step();
    retire_finished();
  }
  // Stopping: every request still here ends as cancelled.
  for (auto& row : rows_) row->sequence->finish("cancelled");
  retire_finished();
  std::deque<std::unique_ptr<Row>> queued;
  {
    std::lock_guard lock(mutex_);
    queued.swap(queue_);
    changes.swap(changes_);
  }
  for (auto& row : queued) end_unstarted(*row, "cancelled");
  for (auto& change : changes) change();  // their callers are waiting
}

void Engine::end_unstarted(Row& row, const char* reason) {
  row.started = Clock::now();
  row.sequence =
      std::make_unique<Sequence>(row.request.prompt, row.request.options, tokenizer_.get());
  row.sequence->finish(reason);
  deliver(row);
}

void Engine::deliver(Row& row) {
  EngineTimings t;
  const auto now = Clock::now();
  t.queue_ms = ms_between(row.submitted, row.started);
  t.first_token_ms = row.first_token ? ms_between(row.submitted, *row.first_token) : 0;
  t.total_ms = ms_between(row.submitted, now);
  t.prompt_tokens = static_cast<int64_t>(row.request.prompt.size());
  t.generated_tokens = static_cast<int64_t>(row.sequence->result().ids.size());
  {
    std::lock_guard lock(mutex_);
    stats_.tokens_generated += t.generated_tokens;
  }
  if (row.error) {
    row.promise.set_exception(row.error);
  } else {
    row.promise.set_value(EngineResult{row.sequence->take_result(), t});
  }
  if (row.request.on_done) row.request.on_done();
}

void Engine::fail_row(Row& row) {
  row.error = std::current_exception();
  row.sequence->finish("error");
}

void Engine::advance_row(Row& row, const at::Tensor& logits) {
  try {
    row.sequence->advance(logits, callback_of(row));
  } catch (...) {
    fail_row(row);
  }
}

TokenCallback Engine::callback_of(Row& row) {
  return [&row](int64_t token, std::string_view text) {
    if (token >= 0 && !row.first_token) row.first_token = Clock::now();
    return !row.request.on_token || row.request.on_token(token, text);
  };
}

void Engine::admit(std::vector<std::unique_ptr<Row>> rows) {
  std::vector<std::unique_ptr<Row>> group;
  for (auto& row : rows) {
    row->started = Clock::now();
    row->sequence =
        std::make_unique<Sequence>(row->request.prompt, row->request.options, tokenizer_.get());
    {
      std::lock_guard lock(mutex_);
      ++stats_.admitted;
    }
    if (row->sequence->done() || ended_from_outside(row->request, row->sequence.get())) {
      deliver(*row);
    } else {
      group.push_back(std::move(row));
    }
  }
  if (group.empty()) return;
  // The newcomers prefill together, left-padded to the longest prompt, each
  // through its own adapter; their first tokens go out now, then they join
  // the batch.
  const auto g = static_cast<int64_t>(group.size());
  size_t longest = 0;
  for (const auto& row : group) longest = std::max(longest, row->request.prompt.size());
  std::vector<int64_t> ids(group.size() * longest, 0), group_pad;
  RowAdapters adapters;
  for (size_t i = 0; i < group.size(); ++i) {
    const std::vector<int64_t>& prompt = group[i]->request.prompt;
    group_pad.push_back(static_cast<int64_t>(longest - prompt.size()));
    std::copy(prompt.begin(), prompt.end(),
              ids.begin() + static_cast<std::ptrdiff_t>(i * longest + longest - prompt.size()));
    adapters.push_back(group[i]->request.adapter_slot);
  }
  const bool padded =
      std::any_of(group_pad.begin(), group_pad.end(), [](int64_t p) { return p > 0; });
  KvCache prefilled;
  prefilled.reserve(static_cast<int64_t>(longest));
  const at::Tensor input = at::tensor(ids, at::TensorOptions().dtype(at::kLong))
                               .view({g, static_cast<int64_t>(longest)})
                               .to(model_->lm_head_weight().device());
  at::Tensor logits;  // [g, vocab]
  try {
    logits = model_->forward_last(input, &prefilled, adapters,
                                  padded ? group_pad : std::vector<int64_t>());
  } catch (...) {
    // The newcomers fail together; the running batch goes on.
    for (auto& row : group) {
      fail_row(*row);
      deliver(*row);
    }
    return;
  }
  std::vector<int64_t> take;
  for (int64_t i = 0; i < g; ++i) {
    Row& row = *group[static_cast<size_t>(i)];
    advance_row(row, logits[i]);
    if (row.sequence->done()) {
      deliver(row);
    } else {
      take.push_back(i);
    }
  }
  if (take.empty()) return;
  merge_rows(cache_, pad_, prefilled, group_pad, take, options_.max_new_tokens);
  for (const int64_t i : take) rows_.push_back(std::move(group[static_cast<size_t>(i)]));
}

void Engine::step() {
  // Rows cancelled or past their deadline leave before the forward.
  for (auto& row : rows_) ended_from_outside(row->request, row->sequence.get());
  retire_finished();
  if (rows_.empty()) return;
  const auto n = static_cast<int64_t>(rows_.size());
  std::vector<int64_t> last(rows_.size());
  RowAdapters adapters(rows_.size());
  for (size_t i = 0; i < rows_.size(); ++i) {
    last[i] = rows_[i]->sequence->last_id();
    adapters[i] = rows_[i]->request.adapter_slot;
  }
  const bool padded = std::any_of(pad_.begin(), pad_.end(), [](int64_t p) { return p > 0; });
  const at::Tensor input = at::tensor(last, at::TensorOptions().dtype(at::kLong))
                               .view({n, 1})
                               .to(model_->lm_head_weight().device());
  at::Tensor logits;  // [n, vocab]
  try {
    logits = model_->forward_last(input, &cache_, adapters, padded ? pad_ : std::vector<int64_t>());
  } catch (...) {
    // The batch's cache may be half written: every row of it fails, and
    // retire_finished() lets them go.
    for (auto& row : rows_) fail_row(*row);
    return;
  }
  for (size_t i = 0; i < rows_.size(); ++i) advance_row(*rows_[i], logits[static_cast<int64_t>(i)]);
  std::lock_guard lock(mutex_);
  ++stats_.steps;
}

void Engine::retire_finished() {
  std::vector<int64_t> keep;
  std::vector<std::unique_ptr<Row>> kept, done;
  for (size_t i = 0; i < rows_.size(); ++i) {
    if (rows_[i]->sequence->done()) {
      done.push_back(std::move(rows_[i]));
    } else {
      keep.push_back(static_cast<int64_t>(i));
      kept.push_back(std::move(rows_[i]));
    }
  }
  if (!done.empty()) keep_rows(cache_, pad_, keep);
  rows_ = std::move(kept);
  {
    // The counts are right before any caller hears its request has ended.
    std::lock_guard lock(mutex_);
    stats_.running = static_cast<int64_t>(rows_.size());
    running_slots_.clear();
    for (const auto& row : rows_) running_slots_.insert(row->request.adapter_slot);
  }
  for (auto& row : done) deliver(*row);
}

}  // namespace vitrine::models
