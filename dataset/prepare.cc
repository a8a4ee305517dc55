#include "dataset/prepare.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>

#include "common/atomic_output.h"
#include "common/json_escape.h"
#include "common/progress.h"
#include "common/stable_hash.h"
#include "dataset/block_cleaner.h"
#include "dataset/hash_set.h"
#include "dataset/line_reader.h"
#include "dataset/output_dir.h"
#include "dataset/pipeline.h"
#include "dataset/prepare_stats.h"

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

// stats.json's "malformed": counts by reason and the first lines set aside.
nlohmann::ordered_json malformed_json(const PrepareCounters& c) {
  nlohmann::ordered_json by_reason;
  for (int i = 1; i < kNumMalformed; ++i)
    by_reason[std::string(malformed_name(static_cast<Malformed>(i)))] = c.malformed[i];
  nlohmann::ordered_json first = nlohmann::ordered_json::array();
  for (const auto& e : c.malformed_examples) {
    first.push_back(
        {{"line", e.line}, {"reason", e.field}, {"detail", e.after}, {"excerpt", e.before}});
  }
  return {{"total", c.malformed_total()}, {"by_reason", by_reason}, {"first", first}};
}

nlohmann::ordered_json build_stats(const LineReader& reader, const std::string& fingerprint,
                                   const PrepareConfig& config, const PrepareCounters& c,
                                   const KeptStats& k, const std::array<const TaskFiles*, 3>& tasks,
                                   const nlohmann::ordered_json& task_details) {
  nlohmann::ordered_json s;
  s["vitrine"] = {{"dataset_format", kDatasetFormat}};
  s["input"] = {
      {"name", reader.name()},
      {"bytes", reader.file_bytes()},
      {"gzip", reader.is_gzip()},
      {"data_bytes", reader.data_bytes()},
      {"lines", c.lines},
      {"fingerprint", fingerprint},
      {"stream_error", reader.stream_error() ? nlohmann::ordered_json(*reader.stream_error())
                                             : nlohmann::ordered_json()}};
  s["config"] = config_to_json(config);
  s["malformed"] = malformed_json(c);
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

// Where kept products go: the catalogue and the task files, or clean.jsonl.
class Outputs {
 public:
  Outputs(const fs::path& dir, const PrepareConfig& config, bool clean_only) {
    if (clean_only) {
      clean_file_ = std::make_unique<AtomicFile>(dir / "clean.jsonl");
      return;
    }
    catalog_ = std::make_unique<catalog::CatalogWriter>(dir / "catalog.sqlite", config.catalog);
    builder_ = std::make_unique<TaskBuilder>(config.tasks);
    describe_ = std::make_unique<TaskFiles>(dir, "describe");
    qa_ = std::make_unique<TaskFiles>(dir, "qa");
    router_ = std::make_unique<TaskFiles>(dir, "router");
  }

  void add(const catalog::Product& product) {
    if (clean_file_) {
      append_clean_line(product, clean_buffer_);
      if (clean_buffer_.size() >= kFlushBytes) {
        clean_file_->write(clean_buffer_);
        clean_buffer_.clear();
      }
      return;
    }
    catalog_->add(product);
    builder_->append_describe(product, describe_->buffer(product.split));
    describe_->settle(product.split);
    builder_->append_qa(product, qa_->buffer(product.split));
    qa_->settle(product.split);
    builder_->append_router(product, router_->buffer(product.split));
    router_->settle(product.split);
  }

  // Commits the files and returns stats.json's content.
  nlohmann::ordered_json commit(const LineReader& reader, const std::string& fingerprint,
                                const PrepareConfig& config, const PrepareCounters& counters,
                                const KeptStats& kept) {
    if (clean_file_) {
      clean_file_->write(clean_buffer_);
      clean_file_->commit();
      return build_stats(reader, fingerprint, config, counters, kept, {}, {});
    }
    describe_->commit();
    qa_->commit();
    router_->commit();
    return build_stats(reader, fingerprint, config, counters, kept,
                       {describe_.get(), qa_.get(), router_.get()}, builder_->stats().to_json());
  }

  // Writes the catalogue's meta table, builds its index and closes it.
  void finish_catalog(const std::string& fingerprint, const nlohmann::ordered_json& stats) {
    if (!catalog_) return;
    catalog_->set_meta("dataset_format", std::to_string(kDatasetFormat));
    catalog_->set_meta("input_fingerprint", fingerprint);
    nlohmann::ordered_json dataset_config = stats["config"];
    dataset_config.erase("run");  // threads and block size do not change the dataset
    catalog_->set_meta("config", dataset_config.dump());
    catalog_->finish();
  }

 private:
  std::unique_ptr<catalog::CatalogWriter> catalog_;
  std::unique_ptr<TaskBuilder> builder_;
  std::unique_ptr<TaskFiles> describe_, qa_, router_;
  std::unique_ptr<AtomicFile> clean_file_;
  std::string clean_buffer_;
};

// The consumer's whole-file rules: de-duplication, and the statistics of
// what is kept. Sees the records in file order.
class Consumer {
 public:
  explicit Consumer(const PrepareConfig& config) : config_(config) {}

  // Applies the duplicate rules to `rec` and, when it survives, counts it and
  // hands it to `outputs`. Drops are counted in `batch.counters`.
  void take(const CleanedRecord& rec, Batch& batch, Outputs& outputs) {
    const std::string_view title(batch.arena.data() + rec.title_off, rec.title_len);
    const std::string_view content(batch.arena.data() + rec.content_off, rec.content_len);
    std::optional<Drop> drop;
    if (config_.filter.drop_duplicates && !pairs_.insert(rec.pair_hash).second) {
      drop = Drop::kDuplicate;
    } else if (config_.filter.drop_duplicate_uids && !uids_.insert(rec.uid_hash).second) {
      drop = Drop::kDuplicateUid;
    }
    if (drop) {
      PrepareCounters& bc = batch.counters;
      ++bc.drops[static_cast<int>(*drop)];
      auto& ex = bc.drop_examples[static_cast<int>(*drop)];
      if (ex.size() < config_.examples_per_rule) {
        ex.push_back(make_record_example(rec.line, title, content));
      }
      return;
    }
    count_kept(rec);
    catalog::Product product;
    product.uid = std::string_view(batch.arena.data() + rec.uid_off, rec.uid_len);
    product.title = title;
    product.content = content;
    product.split = rec.split;
    product.lang = rec.lang;
    product.line = rec.line;
    outputs.add(product);
  }

  const KeptStats& kept() const { return kept_; }

 private:
  void count_kept(const CleanedRecord& rec) {
    ++kept_.kept;
    const uint8_t split_bit = static_cast<uint8_t>(1u << static_cast<int>(rec.split));
    if (!titles_.insert(rec.title_hash).second) ++kept_.sharing_title;
    auto [mask, fresh] = contents_.insert(rec.content_hash);
    if (!fresh) {
      ++kept_.sharing_content;
      if ((*mask & split_bit) == 0) ++kept_.content_across_splits;
    }
    *mask |= split_bit;
    kept_.title_after.add(rec.title_chars);
    kept_.content_after.add(rec.content_chars);
    ++kept_.languages[std::string(rec.lang)];
    ++kept_.splits[static_cast<int>(rec.split)];
  }

  const PrepareConfig& config_;
  KeptStats kept_;
  Hash128Map<uint8_t> pairs_, uids_, titles_, contents_;
};

// Every regular file under `dir` (relative path) with its size.
nlohmann::ordered_json file_sizes(const fs::path& dir) {
  nlohmann::ordered_json files;
  std::vector<fs::path> paths;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) paths.push_back(entry.path());
  }
  std::sort(paths.begin(), paths.end());
  for (const auto& p : paths) files[fs::relative(p, dir).string()] = fs::file_size(p);
  return files;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int worker_count(const PrepareConfig& config) {
  return config.threads > 0 ? config.threads
                            : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace

PrepareResult run_prepare(const fs::path& input, const fs::path& out_dir,
                          const PrepareConfig& config, const PrepareHooks& hooks) {
  validate(config);
  const auto t0 = std::chrono::steady_clock::now();
  // Before any work: nothing but an empty directory or a previous dataset is replaced.
  const fs::path target = resolve_output_dir(out_dir, input);
  LineReader reader(input, config.block_bytes);
  StagingDir staging(target);
  const fs::path dir = staging.path();
  Outputs outputs(dir, config, hooks.clean_only);
  Pipeline pipeline(reader, config, worker_count(config));
  Progress progress(ProgressOptions{.label = "prepare",
                                    .total_bytes = reader.size_known() ? reader.file_bytes() : 0,
                                    .enabled = hooks.progress});
  pipeline.start();

  Consumer consumer(config);
  PrepareCounters counters;
  Batch batch;
  PrepareTimings timings;
  while (pipeline.next(batch)) {
    if (hooks.cancel != nullptr && hooks.cancel->load())
      throw std::runtime_error("interrupted: nothing was written");
    const double cpu_start = thread_cpu_seconds();
    for (const CleanedRecord& rec : batch.records) consumer.take(rec, batch, outputs);
    counters.merge(std::move(batch.counters), config.examples_per_rule, config.malformed_examples);
    timings.consumer_cpu += thread_cpu_seconds() - cpu_start;
    progress.update(pipeline.file_position(), pipeline.lines_read());
  }
  pipeline.stop();
  progress.finish();
  timings.stream = seconds_since(t0);
  timings.parse_clean_cpu = pipeline.worker_cpu();
  timings.input_bytes = reader.file_bytes();

  const KeptStats& kept = consumer.kept();
  if (kept.kept == 0) {
    throw std::runtime_error(
        fmt::format("nothing kept from '{}': {}{}", input.string(), summarize_failure(counters),
                    reader.stream_error() ? "; " + *reader.stream_error() : std::string()));
  }
  PrepareResult result;
  result.kept = kept.kept;
  result.stats = outputs.commit(reader, pipeline.fingerprint(), config, counters, kept);
  const auto t_index = std::chrono::steady_clock::now();
  outputs.finish_catalog(pipeline.fingerprint(), result.stats);
  if (!hooks.clean_only) timings.catalog_index = seconds_since(t_index);

  // File sizes: every artefact but the two that describe them.
  result.stats["files"] = file_sizes(dir);
  result.report = render_report(result.stats);
  write_file_atomic(dir / "stats.json", result.stats.dump(1) + "\n");
  write_file_atomic(dir / "report.md", result.report);
  write_dataset_marker(dir);
  resolve_output_dir(out_dir, input);  // again: the run may have taken minutes
  staging.commit();
  timings.total = seconds_since(t0);
  timings.peak_rss_bytes = peak_rss_bytes();
  result.timings = timings;
  return result;
}

}  // namespace vitrine::dataset
