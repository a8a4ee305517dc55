// Progress for long jobs: a redrawn bar on a terminal, log lines otherwise.
//
// update() is cheap enough to call per batch: it only formats when the
// redraw interval (100 ms on a terminal, 10 s in logs) has passed. Output goes
// to stderr so that stdout stays for results. Not thread-safe: one owner.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace vitrine {

struct ProgressOptions {
  std::string label = "working";  // shown first on every line
  uint64_t total_bytes = 0;       // 0 = unknown: no percentage or ETA
  bool enabled = true;            // false = silent (tests, --quiet)
  bool force_plain = false;       // log lines even on a terminal
  bool steps = false;             // count steps (training) instead of bytes: total_bytes is the
                                  // total number of steps
  std::string items = "lines";    // what update()'s item count counts, as the line names it
};

class Progress {
 public:
  explicit Progress(ProgressOptions options);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `bytes` of the total done so far, `items` processed so far.
  void update(uint64_t bytes, uint64_t items);
  // Text shown after the counts (e.g. "loss 2.31, 1.2k tokens/s").
  void set_detail(std::string detail) { detail_ = std::move(detail); }
  // Draws the final state and ends the line.
  void finish();

 private:
  void draw(bool final);

  ProgressOptions options_;
  bool tty_ = false;
  bool finished_ = false;
  uint64_t bytes_ = 0;
  uint64_t items_ = 0;
  std::string detail_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// "1.23 GB", "512 kB": decimal units, as MB/s figures are quoted.
std::string human_bytes(double bytes);
// "1:02:03" or "2:03".
std::string human_duration(double seconds);

}  // namespace vitrine
