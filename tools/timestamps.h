// Wall-clock time and RFC 3339 formatting for the demo and the end-to-end tests (header-only, no
// dependencies beyond the C and C++ libraries).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

namespace quizflow::tools {

// Milliseconds since the epoch, now.
inline int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC) for `ms` >= 0 since the epoch.
inline std::string rfc3339(int64_t ms) {
  const time_t secs = static_cast<time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

}  // namespace quizflow::tools
