// Bounds how often one kind of log line is written: at most one per interval, with a count of
// the lines held back since the last one (a failure that repeats a million times a second must
// not fill the disk). Thread-safe, lock-free; one static instance per call site.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace quizflow {

class LogRate {
 public:
  explicit LogRate(int64_t interval_ms = 1000) : interval_ms_(interval_ms) {}

  // True when a line may be written now; `suppressed` is then the number of lines held back
  // since the last one written.
  bool allow(int64_t& suppressed) {
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
    int64_t next = next_ms_.load(std::memory_order_relaxed);
    if (now < next ||
        !next_ms_.compare_exchange_strong(next, now + interval_ms_, std::memory_order_relaxed)) {
      suppressed_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
    return true;
  }

 private:
  const int64_t interval_ms_;
  std::atomic<int64_t> next_ms_{0};
  std::atomic<int64_t> suppressed_{0};
};

}  // namespace quizflow
