// Bounds how often one kind of log line is written: at most one per interval, with a count of
// the lines held back since the last one (a failure that repeats a million times a second must
// not fill the disk). Thread-safe, lock-free; one static instance per call site.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace quizflow {

class LogRate {
 public:
  // At most one line per `interval_ms`; while lines keep coming, the interval doubles after each
  // line written, up to `max_interval_ms` (an outage logs at 0 s, 1 s, 3 s, 7 s, … then every
  // 30 s), and starts over once a whole interval went by without a line asked for.
  explicit LogRate(int64_t interval_ms = 1000, int64_t max_interval_ms = 30000)
      : base_ms_(interval_ms), max_ms_(std::max(interval_ms, max_interval_ms)) {}

  // True when a line may be written now; `suppressed` is then the number of lines held back
  // since the last one written.
  bool allow(int64_t& suppressed) {
    return allow_at(std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count(),
                    suppressed);
  }

  // allow() at a given steady-clock time in ms (tests).
  bool allow_at(int64_t now, int64_t& suppressed) {
    int64_t next = next_ms_.load(std::memory_order_relaxed);
    if (now < next) {
      suppressed_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    const int64_t interval = interval_ms_.load(std::memory_order_relaxed);
    const int64_t following = now >= next + interval ? base_ms_ : std::min(interval * 2, max_ms_);
    if (!next_ms_.compare_exchange_strong(next, now + following, std::memory_order_relaxed)) {
      suppressed_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    interval_ms_.store(following, std::memory_order_relaxed);
    suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
    return true;
  }

 private:
  const int64_t base_ms_, max_ms_;
  std::atomic<int64_t> next_ms_{0};
  std::atomic<int64_t> interval_ms_{0};
  std::atomic<int64_t> suppressed_{0};
};

}  // namespace quizflow
