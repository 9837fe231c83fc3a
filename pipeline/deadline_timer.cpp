#include "pipeline/deadline_timer.h"

#include <spdlog/spdlog.h>

#include "core/log_rate.h"

namespace quizflow {

DeadlineTimer::DeadlineTimer(std::function<void()> fire)
    : fire_(std::move(fire)), thread_([this] { run(); }) {}

DeadlineTimer::~DeadlineTimer() { stop(); }

void DeadlineTimer::arm(Clock::time_point at) {
  MutexLock lock(mu_);
  if (at >= deadline_) return;
  deadline_ = at;
  cv_.notify_one();
}

void DeadlineTimer::stop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

void DeadlineTimer::run() {
  mu_.lock();
  while (!stopping_) {
    if (deadline_ == Clock::time_point::max()) {
      cv_.wait(mu_);
      continue;
    }
    if (Clock::now() < deadline_) {
      // A copy: condition_variable_any reads the time point again after it released mu_, when
      // arm() may be writing deadline_ (a data race TSan reported).
      const Clock::time_point until = deadline_;
      cv_.wait_until(mu_, until);
      continue;
    }
    deadline_ = Clock::time_point::max();
    mu_.unlock();
    try {
      fire_();
    } catch (const std::exception& e) {
      static LogRate rate;
      if (int64_t n = 0; rate.allow(n)) spdlog::error("deadline timer: {} ({} more)", e.what(), n);
    } catch (...) {
      spdlog::error("deadline timer: unknown exception");
    }
    mu_.lock();
  }
  mu_.unlock();
}

}  // namespace quizflow
