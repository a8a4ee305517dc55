#include "dataset/prepare.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <time.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "common/atomic_output.h"
#include "common/json_escape.h"
#include "common/progress.h"
#include "common/stable_hash.h"
#include "common/utf8.h"
#include "dataset/hash_set.h"
#include "dataset/language.h"
#include "dataset/line_reader.h"
#include "dataset/prepare_stats.h"
#include "dataset/record_parser.h"

namespace vitrine::dataset {
namespace fs = std::filesystem;
namespace {

constexpr int kDatasetFormat = 1;
constexpr size_t kFlushBytes = 1 << 20;

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

uint64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;
}

// A record that survived the per-record rules, with its text in the batch arena.
struct CleanedRecord {
  uint64_t line = 0;
  uint32_t uid_off = 0, uid_len = 0;
  uint32_t title_off = 0, title_len = 0;
  uint32_t content_off = 0, content_len = 0;
  uint32_t title_chars = 0, content_chars = 0;
  Hash128 pair_hash, uid_hash, title_hash, content_hash;
  catalog::Split split = catalog::Split::kTrain;
  std::string_view lang;
};

struct Batch {
  uint64_t sequence = 0;
  std::string arena;
  std::vector<CleanedRecord> records;
  PrepareCounters counters;
  double cpu_seconds = 0;
};

void ascii_lower_into(std::string_view s, std::string& out) {
  const size_t at = out.size();
  out.append(s);
  for (size_t i = at; i < out.size(); ++i) {
    const char c = out[i];
    if (c >= 'A' && c <= 'Z') out[i] = static_cast<char>(c + 32);
  }
}

// Parses and cleans the lines of one block. One per worker thread.
class BlockCleaner {
 public:
  explicit BlockCleaner(const PrepareConfig& config)
      : config_(config), parser_(config.repair_utf8), cleaner_(config.clean) {}

  void run(const LineBlock& block, Batch& batch) {
    const double cpu_start = thread_cpu_seconds();
    batch.sequence = block.sequence;
    const char* p = block.data();
    const char* end = p + block.size;
    uint64_t line_no = block.first_line;
    while (p < end) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
      const char* line_end = nl != nullptr ? nl : end;
      process_line(std::string_view(p, static_cast<size_t>(line_end - p)), line_no, batch);
      ++line_no;
      p = line_end + 1;
    }
    batch.cpu_seconds = thread_cpu_seconds() - cpu_start;
  }

 private:
  bool want_example(const std::vector<Example>& v) const {
    return v.size() < config_.examples_per_rule;
  }

  void process_line(std::string_view line, uint64_t line_no, Batch& batch) {
    PrepareCounters& c = batch.counters;
    ++c.lines;
    RawRecord raw;
    const Malformed why = parser_.parse(line, raw);
    if (why != Malformed::kNone) {
      ++c.malformed[static_cast<int>(why)];
      if (c.malformed_examples.size() < config_.malformed_examples) {
        std::string shown;
        utf8::repair(line.substr(0, 200), shown);
        for (char& ch : shown) {
          if (static_cast<unsigned char>(ch) < 0x20) ch = ' ';
        }
        Example e = make_example(line_no, malformed_name(why), shown, shown, 100);
        e.after = parser_.detail();
        c.malformed_examples.push_back(std::move(e));
      }
      return;
    }
    ++c.records;
    if (raw.utf8_repaired) {
      ++c.title_transforms[static_cast<int>(Transform::kUtf8Repaired)];
      auto& ex = c.transform_examples[static_cast<int>(Transform::kUtf8Repaired)];
      if (want_example(ex)) ex.push_back(make_example(line_no, "record", raw.title, raw.title));
    }
    if (!raw.title.empty()) c.title_before.add(utf8::count_code_points(raw.title));
    if (raw.content.empty()) {
      ++c.raw_empty_content;
    } else {
      c.content_before.add(utf8::count_code_points(raw.content));
    }
    clean_field(raw.title, false, line_no, title_, c.title_transforms, c);
    clean_field(raw.content, true, line_no, content_, c.content_transforms, c);

    const size_t title_chars = utf8::count_code_points(title_);
    const size_t content_chars = utf8::count_code_points(content_);
    const FilterOptions& f = config_.filter;
    std::optional<Drop> drop;
    if (title_.empty()) {
      drop = Drop::kEmptyTitle;
    } else if (title_chars < f.min_title_chars) {
      drop = Drop::kShortTitle;
    } else if (f.max_title_chars > 0 && title_chars > f.max_title_chars) {
      drop = Drop::kLongTitle;
    } else if (content_.empty()) {
      drop = Drop::kEmptyContent;
    } else if (content_chars < f.min_content_chars) {
      drop = Drop::kShortContent;
    } else if (f.drop_content_equal_to_title && content_ == title_) {
      drop = Drop::kContentIsTitle;
    }
    if (drop) {
      ++c.drops[static_cast<int>(*drop)];
      auto& ex = c.drop_examples[static_cast<int>(*drop)];
      if (want_example(ex)) {
        ex.push_back(make_record_example(line_no, title_, content_));
      }
      return;
    }

    CleanedRecord rec;
    rec.line = line_no;
    std::string& arena = batch.arena;
    rec.uid_off = static_cast<uint32_t>(arena.size());
    if (raw.uid.empty()) {
      // No uid in the record (some published excerpts lost it): derive one
      // from the cleaned text, so the same product always gets the same id.
      joined_.assign(title_).push_back('\x1f');
      joined_.append(content_);
      arena += fmt::format("h{:016x}", stable_hash64(joined_));
      ++c.title_transforms[static_cast<int>(Transform::kUidDerived)];
      auto& ex = c.transform_examples[static_cast<int>(Transform::kUidDerived)];
      if (want_example(ex)) {
        ex.push_back(Example{line_no, "uid", "(none)", arena.substr(rec.uid_off)});
      }
    } else {
      arena.append(raw.uid);
    }
    rec.uid_len = static_cast<uint32_t>(arena.size() - rec.uid_off);
    rec.title_off = static_cast<uint32_t>(arena.size());
    arena.append(title_);
    rec.title_len = static_cast<uint32_t>(title_.size());
    rec.content_off = static_cast<uint32_t>(arena.size());
    arena.append(content_);
    rec.content_len = static_cast<uint32_t>(content_.size());
    rec.title_chars = static_cast<uint32_t>(title_chars);
    rec.content_chars = static_cast<uint32_t>(content_chars);

    const std::string_view uid(arena.data() + rec.uid_off, rec.uid_len);
    lowered_.clear();
    ascii_lower_into(title_, lowered_);
    const size_t title_lower_len = lowered_.size();
    lowered_.push_back('\x1f');
    ascii_lower_into(content_, lowered_);
    const std::string_view lower(lowered_);
    rec.pair_hash = stable_hash128(lower);
    rec.title_hash = stable_hash128(lower.substr(0, title_lower_len));
    rec.content_hash = stable_hash128(lower.substr(title_lower_len + 1));
    rec.uid_hash = stable_hash128(uid);
    rec.split = assign_split(uid, config_.split);
    rec.lang = detect_language(title_, content_);
    batch.records.push_back(rec);
  }

  void clean_field(std::string_view raw, bool is_content, uint64_t line_no, std::string& out,
                   std::array<uint64_t, kNumTransforms>& counts, PrepareCounters& c) {
    const uint32_t rules = cleaner_.clean(raw, is_content, out);
    c.entities_decoded += cleaner_.last_entities();
    if (rules == 0) return;
    for (int i = 0; i <= static_cast<int>(Transform::kTruncated); ++i) {
      if ((rules & (1u << i)) == 0) continue;
      ++counts[i];
      auto& ex = c.transform_examples[i];
      if (want_example(ex))
        ex.push_back(make_example(line_no, is_content ? "content" : "title", raw, out));
    }
  }

  const PrepareConfig& config_;
  RecordParser parser_;
  TextCleaner cleaner_;
  std::string title_, content_, lowered_, joined_;
};

// One JSONL task file per (task, split), buffered and written atomically.
class TaskFiles {
 public:
  TaskFiles(const fs::path& dir, std::string_view task) {
    fs::create_directories(dir / "tasks" / std::string(task));
    for (int s = 0; s < catalog::kNumSplits; ++s) {
      const fs::path path =
          dir / "tasks" / std::string(task) /
          fmt::format("{}.jsonl", catalog::split_name(static_cast<catalog::Split>(s)));
      files_[s] = std::make_unique<AtomicFile>(path);
    }
  }
  std::string& buffer(catalog::Split s) { return buffers_[static_cast<int>(s)]; }
  // Counts the lines appended since the last call and flushes big buffers.
  void settle(catalog::Split s) {
    const int i = static_cast<int>(s);
    std::string& b = buffers_[i];
    lines_[i] += static_cast<uint64_t>(
        std::count(b.begin() + static_cast<std::ptrdiff_t>(counted_[i]), b.end(), '\n'));
    counted_[i] = b.size();
    if (b.size() >= kFlushBytes) {
      files_[i]->write(b);
      b.clear();
      counted_[i] = 0;
    }
  }
  void commit() {
    for (int s = 0; s < catalog::kNumSplits; ++s) {
      files_[s]->write(buffers_[s]);
      files_[s]->commit();
    }
  }
  uint64_t lines(int s) const { return lines_[s]; }

 private:
  std::array<std::unique_ptr<AtomicFile>, catalog::kNumSplits> files_;
  std::array<std::string, catalog::kNumSplits> buffers_;
  std::array<size_t, catalog::kNumSplits> counted_{};
  std::array<uint64_t, catalog::kNumSplits> lines_{};
};

// Order-restoring pipeline: reader -> workers -> in-order consumer.
class Pipeline {
 public:
  Pipeline(LineReader& reader, const PrepareConfig& config, int workers)
      : reader_(reader),
        config_(config),
        workers_(workers),
        max_in_flight_(static_cast<size_t>(workers) * 2 + 2) {}

  ~Pipeline() { stop(); }

  void start() {
    threads_.emplace_back([this] { guard([this] { read_loop(); }); });
    for (int i = 0; i < workers_; ++i)
      threads_.emplace_back([this] { guard([this] { work_loop(); }); });
  }

  // The next batch in file order; false at the end. Rethrows worker errors.
  // `batch`'s previous buffers go back to the workers for reuse.
  bool next(Batch& batch) {
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

  uint64_t file_position() const { return file_position_.load(std::memory_order_relaxed); }
  uint64_t lines_read() const { return lines_read_.load(std::memory_order_relaxed); }
  std::string fingerprint() const { return fingerprint_.hex(); }
  double worker_cpu() const { return worker_cpu_; }

  void stop() {
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

 private:
  template <typename F>
  void guard(F&& f) {
    try {
      f();
    } catch (...) {
      std::lock_guard lock(mu_);
      if (!error_) error_ = std::current_exception();
      cv_.notify_all();
    }
  }

  void read_loop() {
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

  void work_loop() {
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

}  // namespace

namespace {

// What the consumer accumulates over kept products.
struct KeptStats {
  uint64_t kept = 0;
  LengthHistogram title_after, content_after;
  std::map<std::string, uint64_t> languages;
  std::array<uint64_t, catalog::kNumSplits> splits{};
  uint64_t sharing_title = 0, sharing_content = 0, content_across_splits = 0;
};

nlohmann::ordered_json examples_json(const std::vector<Example>& examples) {
  nlohmann::ordered_json arr = nlohmann::ordered_json::array();
  for (const auto& e : examples) {
    arr.push_back({{"line", e.line}, {"field", e.field}, {"before", e.before}, {"after", e.after}});
  }
  return arr;
}

nlohmann::ordered_json build_stats(const fs::path& input, const LineReader& reader,
                                   const std::string& fingerprint, const PrepareConfig& config,
                                   const PrepareCounters& c, const KeptStats& k,
                                   const std::array<const TaskFiles*, 3>& tasks,
                                   const nlohmann::ordered_json& task_details) {
  nlohmann::ordered_json s;
  s["vitrine"] = {{"dataset_format", kDatasetFormat}};
  s["input"] = {
      {"name", input.filename().string()},
      {"bytes", reader.file_bytes()},
      {"gzip", reader.is_gzip()},
      {"data_bytes", reader.data_bytes()},
      {"lines", c.lines},
      {"fingerprint", fingerprint},
      {"stream_error", reader.stream_error() ? nlohmann::ordered_json(*reader.stream_error())
                                             : nlohmann::ordered_json()}};
  s["config"] = config_to_json(config);
  nlohmann::ordered_json by_reason;
  for (int i = 1; i < kNumMalformed; ++i)
    by_reason[std::string(malformed_name(static_cast<Malformed>(i)))] = c.malformed[i];
  nlohmann::ordered_json first = nlohmann::ordered_json::array();
  for (const auto& e : c.malformed_examples) {
    first.push_back(
        {{"line", e.line}, {"reason", e.field}, {"detail", e.after}, {"excerpt", e.before}});
  }
  s["malformed"] = {{"total", c.malformed_total()}, {"by_reason", by_reason}, {"first", first}};
  s["records"] = {{"parsed", c.records},
                  {"kept", k.kept},
                  {"dropped", c.records - k.kept},
                  {"raw_empty_content", c.raw_empty_content}};
  nlohmann::ordered_json transforms = nlohmann::ordered_json::array();
  for (int i = 0; i < kNumTransforms; ++i) {
    transforms.push_back({{"rule", transform_name(static_cast<Transform>(i))},
                          {"titles", c.title_transforms[i]},
                          {"contents", c.content_transforms[i]},
                          {"examples", examples_json(c.transform_examples[i])}});
  }
  s["transforms"] = transforms;
  s["entities_decoded"] = c.entities_decoded;
  nlohmann::ordered_json drops = nlohmann::ordered_json::array();
  for (int i = 0; i < kNumDrops; ++i) {
    drops.push_back({{"rule", drop_name(static_cast<Drop>(i))},
                     {"records", c.drops[i]},
                     {"examples", examples_json(c.drop_examples[i])}});
  }
  s["drops"] = drops;
  s["lengths"] = {
      {"title", {{"before", c.title_before.summary()}, {"after", k.title_after.summary()}}},
      {"content", {{"before", c.content_before.summary()}, {"after", k.content_after.summary()}}}};
  // Languages by count, then name: a stable order.
  std::vector<std::pair<std::string, uint64_t>> langs(k.languages.begin(), k.languages.end());
  std::stable_sort(langs.begin(), langs.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  nlohmann::ordered_json languages = nlohmann::ordered_json::object();
  for (const auto& [lang, n] : langs) languages[lang] = n;
  s["languages"] = languages;
  const uint64_t dup = c.drops[static_cast<int>(Drop::kDuplicate)];
  const uint64_t candidates = k.kept + dup + c.drops[static_cast<int>(Drop::kDuplicateUid)];
  s["duplicates"] = {
      {"exact_duplicates_dropped", dup},
      {"exact_duplicate_rate",
       candidates ? static_cast<double>(dup) / static_cast<double>(candidates) : 0.0},
      {"duplicate_uids_dropped", c.drops[static_cast<int>(Drop::kDuplicateUid)]},
      {"kept_sharing_a_title", k.sharing_title},
      {"kept_sharing_a_description", k.sharing_content},
      {"descriptions_shared_across_splits", k.content_across_splits}};
  nlohmann::ordered_json splits;
  for (int i = 0; i < catalog::kNumSplits; ++i)
    splits[std::string(catalog::split_name(static_cast<catalog::Split>(i)))] = k.splits[i];
  s["splits"] = {{"key", "uid"}, {"products", splits}};
  if (tasks[0] != nullptr) {
    nlohmann::ordered_json examples;
    const char* names[] = {"describe", "qa", "router"};
    for (int t = 0; t < 3; ++t) {
      nlohmann::ordered_json per;
      for (int i = 0; i < catalog::kNumSplits; ++i)
        per[std::string(catalog::split_name(static_cast<catalog::Split>(i)))] = tasks[t]->lines(i);
      examples[names[t]] = per;
    }
    s["tasks"] = {{"examples", examples}, {"details", task_details}};
    s["catalog"] = {{"file", "catalog.sqlite"},
                    {"products", k.kept},
                    {"fts_index_content", config.catalog.index_content}};
  } else {
    s["clean"] = {{"file", "clean.jsonl"}, {"products", k.kept}};
  }
  return s;
}

void append_clean_line(const catalog::Product& p, std::string& out) {
  out.push_back('{');
  append_json_key(out, "uid");
  append_json_string(out, p.uid);
  out.push_back(',');
  append_json_key(out, "title");
  append_json_string(out, p.title);
  out.push_back(',');
  append_json_key(out, "content");
  append_json_string(out, p.content);
  out.push_back(',');
  append_json_key(out, "split");
  append_json_string(out, catalog::split_name(p.split));
  out.append("}\n");
}

std::string summarize_failure(const PrepareCounters& c) {
  std::string why = fmt::format("{} lines read, {} malformed", c.lines, c.malformed_total());
  for (int i = 0; i < kNumDrops; ++i) {
    if (c.drops[i] > 0) why += fmt::format(", {} {}", c.drops[i], drop_name(static_cast<Drop>(i)));
  }
  return why;
}

}  // namespace

PrepareResult run_prepare(const fs::path& input, const fs::path& out_dir,
                          const PrepareConfig& config, const PrepareHooks& hooks) {
  validate(config);
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds_since = [](auto start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  LineReader reader(input, config.block_bytes);
  StagingDir staging(out_dir);
  const fs::path dir = staging.path();

  std::unique_ptr<catalog::CatalogWriter> catalog;
  std::unique_ptr<TaskBuilder> builder;
  std::unique_ptr<TaskFiles> describe, qa, router;
  std::unique_ptr<AtomicFile> clean_file;
  std::string clean_buffer;
  if (hooks.clean_only) {
    clean_file = std::make_unique<AtomicFile>(dir / "clean.jsonl");
  } else {
    catalog = std::make_unique<catalog::CatalogWriter>(dir / "catalog.sqlite", config.catalog);
    builder = std::make_unique<TaskBuilder>(config.tasks);
    describe = std::make_unique<TaskFiles>(dir, "describe");
    qa = std::make_unique<TaskFiles>(dir, "qa");
    router = std::make_unique<TaskFiles>(dir, "router");
  }

  const int workers = config.threads > 0
                          ? config.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  Pipeline pipeline(reader, config, workers);
  Progress progress(ProgressOptions{
      .label = "prepare", .total_bytes = reader.file_bytes(), .enabled = hooks.progress});
  pipeline.start();

  PrepareCounters counters;
  KeptStats kept;
  Hash128Map<uint8_t> pairs, uids, titles, contents;
  Batch batch;
  double consumer_cpu = 0;
  while (pipeline.next(batch)) {
    if (hooks.cancel != nullptr && hooks.cancel->load())
      throw std::runtime_error("interrupted: nothing was written");
    const double cpu_start = thread_cpu_seconds();
    for (const CleanedRecord& rec : batch.records) {
      const std::string_view title(batch.arena.data() + rec.title_off, rec.title_len);
      const std::string_view content(batch.arena.data() + rec.content_off, rec.content_len);
      std::optional<Drop> drop;
      if (config.filter.drop_duplicates && !pairs.insert(rec.pair_hash).second) {
        drop = Drop::kDuplicate;
      } else if (config.filter.drop_duplicate_uids && !uids.insert(rec.uid_hash).second) {
        drop = Drop::kDuplicateUid;
      }
      if (drop) {
        PrepareCounters& bc = batch.counters;
        ++bc.drops[static_cast<int>(*drop)];
        auto& ex = bc.drop_examples[static_cast<int>(*drop)];
        if (ex.size() < config.examples_per_rule) {
          ex.push_back(make_record_example(rec.line, title, content));
        }
        continue;
      }
      ++kept.kept;
      const uint8_t split_bit = static_cast<uint8_t>(1u << static_cast<int>(rec.split));
      if (!titles.insert(rec.title_hash).second) ++kept.sharing_title;
      auto [mask, fresh] = contents.insert(rec.content_hash);
      if (!fresh) {
        ++kept.sharing_content;
        if ((*mask & split_bit) == 0) ++kept.content_across_splits;
      }
      *mask |= split_bit;
      kept.title_after.add(rec.title_chars);
      kept.content_after.add(rec.content_chars);
      ++kept.languages[std::string(rec.lang)];
      ++kept.splits[static_cast<int>(rec.split)];

      catalog::Product product;
      product.uid = std::string_view(batch.arena.data() + rec.uid_off, rec.uid_len);
      product.title = title;
      product.content = content;
      product.split = rec.split;
      product.lang = rec.lang;
      product.line = rec.line;
      if (clean_file) {
        append_clean_line(product, clean_buffer);
        if (clean_buffer.size() >= kFlushBytes) {
          clean_file->write(clean_buffer);
          clean_buffer.clear();
        }
        continue;
      }
      catalog->add(product);
      builder->append_describe(product, describe->buffer(rec.split));
      describe->settle(rec.split);
      builder->append_qa(product, qa->buffer(rec.split));
      qa->settle(rec.split);
      builder->append_router(product, router->buffer(rec.split));
      router->settle(rec.split);
    }
    counters.merge(std::move(batch.counters), config.examples_per_rule, config.malformed_examples);
    consumer_cpu += thread_cpu_seconds() - cpu_start;
    progress.update(pipeline.file_position(), pipeline.lines_read());
  }
  pipeline.stop();
  progress.finish();
  PrepareTimings timings;
  timings.stream = seconds_since(t0);
  timings.parse_clean_cpu = pipeline.worker_cpu();
  timings.consumer_cpu = consumer_cpu;
  timings.input_bytes = reader.file_bytes();

  if (kept.kept == 0) {
    throw std::runtime_error(
        fmt::format("nothing kept from '{}': {}{}", input.string(), summarize_failure(counters),
                    reader.stream_error() ? "; " + *reader.stream_error() : std::string()));
  }
  PrepareResult result;
  result.kept = kept.kept;
  if (clean_file) {
    clean_file->write(clean_buffer);
    clean_file->commit();
    result.stats =
        build_stats(input, reader, pipeline.fingerprint(), config, counters, kept, {}, {});
  } else {
    describe->commit();
    qa->commit();
    router->commit();
    result.stats =
        build_stats(input, reader, pipeline.fingerprint(), config, counters, kept,
                    {describe.get(), qa.get(), router.get()}, builder->stats().to_json());
    const auto t_index = std::chrono::steady_clock::now();
    catalog->set_meta("dataset_format", std::to_string(kDatasetFormat));
    catalog->set_meta("input_fingerprint", pipeline.fingerprint());
    nlohmann::ordered_json dataset_config = result.stats["config"];
    dataset_config.erase("run");  // threads and block size do not change the dataset
    catalog->set_meta("config", dataset_config.dump());
    catalog->finish();
    timings.catalog_index = seconds_since(t_index);
  }

  // File sizes: every artefact but the two that describe them.
  nlohmann::ordered_json files;
  std::vector<fs::path> paths;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) paths.push_back(entry.path());
  }
  std::sort(paths.begin(), paths.end());
  for (const auto& p : paths) files[fs::relative(p, dir).string()] = fs::file_size(p);
  result.stats["files"] = files;
  result.report = render_report(result.stats);
  write_file_atomic(dir / "stats.json", result.stats.dump(1) + "\n");
  write_file_atomic(dir / "report.md", result.report);
  staging.commit();
  timings.total = seconds_since(t0);
  timings.peak_rss_bytes = peak_rss_bytes();
  result.timings = timings;
  return result;
}

}  // namespace vitrine::dataset
