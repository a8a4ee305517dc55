// Wall-clock time as the logs, job records and API responses write it:
// milliseconds (or seconds) since the Unix epoch. Durations are measured
// with std::chrono::steady_clock where they are taken, not here.
#pragma once

#include <chrono>
#include <cstdint>

namespace vitrine {

// Milliseconds since 1970-01-01T00:00:00Z.
inline int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Seconds since the epoch, with sub-second precision.
inline double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace vitrine
