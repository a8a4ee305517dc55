// `vitrine prepare`: raw trn.json(.gz) -> one cleaned dataset directory.
//
//   DIR/catalog.sqlite            every kept product + FTS5 title index
//   DIR/tasks/describe/{train,validation,test}.jsonl
//   DIR/tasks/qa/{train,validation,test}.jsonl
//   DIR/tasks/router/{train,validation,test}.jsonl
//   DIR/stats.json, DIR/report.md every cleaning decision, counted
//
// The file is streamed once: a reader thread inflates and cuts blocks of
// lines, workers parse and clean blocks in parallel, and one consumer takes
// the blocks back in file order to de-duplicate, split and write, so the
// output is byte-identical whatever the thread count. Everything is written
// to a staging directory that replaces DIR only when complete; DIR must be
// new, empty or a dataset prepare wrote (see output_dir.h).
// Not goals: incremental updates of an existing dataset; other input formats.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "catalog/catalog.h"
#include "dataset/split.h"
#include "dataset/tasks.h"
#include "dataset/text_cleaner.h"

namespace vitrine::dataset {

struct FilterOptions {
  size_t min_title_chars = 2;  // shorter titles ("A", "") cannot name a product
  size_t max_title_chars =
      400;  // longer titles are keyword-stuffed listings, dropped; raises memory per example
  size_t min_content_chars =
      40;  // shorter descriptions ("Paperback", "Good book") teach nothing; 0 keeps all non-empty
  bool drop_content_equal_to_title =
      true;  // a description that only repeats the title teaches the copy task
  bool drop_duplicates =
      true;  // same title and content (ASCII case-insensitive): the first is kept
  bool drop_duplicate_uids = true;  // a uid seen before: the first record is kept, so uids are keys
};

struct PrepareConfig {
  CleanOptions clean;               // transforming rules
  FilterOptions filter;             // dropping rules
  SplitOptions split;               // train / validation / test by uid hash
  TaskOptions tasks;                // questions, answers and router examples
  catalog::CatalogOptions catalog;  // catalog.sqlite
  bool repair_utf8 = true;  // replace invalid UTF-8 with U+FFFD (counted); false sets such lines
                            // aside as malformed
  int threads = 0;          // parse/clean workers; 0 = number of cores
  size_t block_bytes = 4 << 20;    // lines are handed to workers in blocks of this size; bigger =
                                   // more memory, less overhead
  size_t examples_per_rule = 3;    // examples of each rule firing kept for the report
  size_t malformed_examples = 10;  // first malformed lines listed in the report
};

// Seconds spent, for benchmarks; not part of the dataset (which must be
// byte-identical between runs).
struct PrepareTimings {
  double total = 0;  // wall time of the whole run
  double stream =
      0;  // reading, parsing, cleaning, filtering, de-duplicating and writing task files
  double catalog_index = 0;    // building the FTS5 index and closing the database
  double parse_clean_cpu = 0;  // CPU time of the workers (all threads)
  double consumer_cpu = 0;     // time of the consumer: dedupe, catalogue inserts, task files
  uint64_t input_bytes = 0;
  uint64_t peak_rss_bytes = 0;
};

struct PrepareResult {
  nlohmann::ordered_json stats;  // the content of stats.json
  std::string report;            // the content of report.md
  PrepareTimings timings;
  uint64_t kept = 0;
};

struct PrepareHooks {
  const std::atomic<bool>* cancel = nullptr;  // set (e.g. by SIGINT) to stop; nothing is written
  bool progress = true;                       // progress bar / log lines on stderr
  // Write only DIR/clean.jsonl ({"uid","title","content","split"} per kept
  // product) with stats.json and report.md: no catalogue, no task files. For
  // other tools, and to time the cleaning stage alone against other cleaners.
  bool clean_only = false;
};

// Throws std::invalid_argument for a config that cannot work.
void validate(const PrepareConfig& config);

// Runs prepare. Throws std::runtime_error, before any work, when `out_dir`
// must not be replaced (it holds the input, is the current directory, or is
// not a dataset: see resolve_output_dir); and when the input cannot be read
// at all, when nothing is kept, or on output errors. DIR is then untouched.
PrepareResult run_prepare(const std::filesystem::path& input, const std::filesystem::path& out_dir,
                          const PrepareConfig& config, const PrepareHooks& hooks = {});

// The config as recorded in stats.json and the catalogue's meta table:
// sections clean, filter, split, tasks, catalog, run (prepare.yaml's layout).
nlohmann::ordered_json config_to_json(const PrepareConfig& config);

// Overrides `config` with the keys present in `json` (same layout). Throws
// std::invalid_argument naming the key on unknown keys or wrong types.
void apply_config_json(const nlohmann::json& json, PrepareConfig& config);

}  // namespace vitrine::dataset
