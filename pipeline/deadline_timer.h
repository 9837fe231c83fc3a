// A timer that sleeps until the earliest deadline armed and then calls `fire` once, on its own
// thread. Nothing polls: an idle engine arms nothing and the thread waits on a condition
// variable. The batch stage arms it with the nearest flush deadline after every step.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

#include "core/mutex.h"

namespace quizflow {

class DeadlineTimer {
 public:
  using Clock = std::chrono::steady_clock;

  // `fire` must not throw (exceptions are caught and logged) and should return quickly.
  explicit DeadlineTimer(std::function<void()> fire);
  ~DeadlineTimer();  // stop()
  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;

  // Fires at `at` unless armed for an earlier time already. Thread-safe; cheap when the armed
  // deadline is earlier (one uncontended lock, no wake-up).
  void arm(Clock::time_point at) QF_EXCLUDES(mu_);

  // Stops and joins the thread; a pending deadline does not fire. Idempotent.
  void stop() QF_EXCLUDES(mu_);

 private:
  void run() QF_EXCLUDES(mu_);

  std::function<void()> fire_;
  Mutex mu_;
  CondVar cv_;
  Clock::time_point deadline_ QF_GUARDED_BY(mu_) = Clock::time_point::max();
  bool stopping_ QF_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace quizflow
