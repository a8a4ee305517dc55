#include "common/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace vitrine {

std::string human_bytes(double bytes) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB"};
  int unit = 0;
  while (bytes >= 1000.0 && unit < 4) {
    bytes /= 1000.0;
    ++unit;
  }
  return unit == 0 ? fmt::format("{:.0f} {}", bytes, kUnits[unit])
                   : fmt::format("{:.2f} {}", bytes, kUnits[unit]);
}

std::string human_duration(double seconds) {
  if (seconds < 0) seconds = 0;
  const auto total = static_cast<long>(seconds + 0.5);
  const long h = total / 3600, m = (total / 60) % 60, s = total % 60;
  return h > 0 ? fmt::format("{}:{:02}:{:02}", h, m, s) : fmt::format("{}:{:02}", m, s);
}

Progress::Progress(ProgressOptions options) : options_(std::move(options)) {
  tty_ = !options_.force_plain && ::isatty(STDERR_FILENO) == 1;
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (!finished_ && tty_ && options_.enabled) std::fputc('\n', stderr);
}

void Progress::update(uint64_t bytes, uint64_t items) {
  bytes_ = bytes;
  items_ = items;
  if (!options_.enabled) return;
  const auto now = std::chrono::steady_clock::now();
  const auto interval = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(10000);
  if (now - last_draw_ < interval) return;
  last_draw_ = now;
  draw(false);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (options_.enabled) draw(true);
}

void Progress::draw(bool final) {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? static_cast<double>(bytes_) / secs : 0.0;
  std::string line = fmt::format("{} ", options_.label);
  if (options_.total_bytes > 0) {
    const double frac =
        std::min(1.0, static_cast<double>(bytes_) / static_cast<double>(options_.total_bytes));
    if (tty_) {
      constexpr int kWidth = 24;
      const int filled = static_cast<int>(frac * kWidth);
      line.push_back('[');
      line.append(static_cast<size_t>(filled), '#');
      line.append(static_cast<size_t>(kWidth - filled), '.');
      line.append("] ");
    }
    const double eta =
        rate > 0
            ? static_cast<double>(options_.total_bytes - std::min(bytes_, options_.total_bytes)) /
                  rate
            : 0;
    if (options_.steps) {
      line += fmt::format("{:3.0f}% step {}/{}, {} {}", frac * 100.0, bytes_, options_.total_bytes,
                          final ? "took" : "ETA", human_duration(final ? secs : eta));
    } else {
      line +=
          fmt::format("{:3.0f}% {} / {}", frac * 100.0, human_bytes(static_cast<double>(bytes_)),
                      human_bytes(static_cast<double>(options_.total_bytes)));
      line += fmt::format(", {}/s, {} {}, {} {}", human_bytes(rate), items_, options_.items,
                          final ? "took" : "ETA", human_duration(final ? secs : eta));
    }
  } else {
    line += fmt::format("{}, {}/s, {} {}, {}", human_bytes(static_cast<double>(bytes_)),
                        human_bytes(rate), items_, options_.items, human_duration(secs));
  }
  if (!detail_.empty()) line += ", " + detail_;
  if (tty_) {
    std::fprintf(stderr, "\r\033[2K%s%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace vitrine
