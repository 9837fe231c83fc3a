#include "ingress/http_replies.h"

#include <spdlog/spdlog.h>

#include "core/log_rate.h"

namespace quizflow::ingress {

ReplyDeadlines::ReplyDeadlines(std::chrono::milliseconds timeout)
    : timeout_(timeout), thread_([this] { run(); }) {}

ReplyDeadlines::~ReplyDeadlines() { stop(); }

void ReplyDeadlines::watch(const std::shared_ptr<Expirable>& r) {
  MutexLock lock(mu_);
  const bool wake = queue_.empty();
  queue_.emplace_back(Clock::now() + timeout_, r);
  if (wake) cv_.notify_one();
}

size_t ReplyDeadlines::watched() const {
  MutexLock lock(mu_);
  return queue_.size();
}

void ReplyDeadlines::stop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void ReplyDeadlines::run() {
  std::vector<std::shared_ptr<Expirable>> due;
  for (;;) {
    {
      MutexLock lock(mu_);
      for (;;) {
        if (stopping_) return;
        // Replies answered in time were freed: drop them without waiting for their deadline.
        while (!queue_.empty() && queue_.front().second.expired()) queue_.pop_front();
        if (!queue_.empty() && queue_.front().first <= Clock::now()) break;
        if (queue_.empty())
          cv_.wait(mu_);
        else
          cv_.wait_until(mu_, queue_.front().first);
      }
      const auto now = Clock::now();
      while (!queue_.empty() && queue_.front().first <= now) {
        if (auto r = queue_.front().second.lock()) due.push_back(std::move(r));
        queue_.pop_front();
      }
    }
    for (auto& r : due) r->expire();  // noexcept; sends outside the lock
    due.clear();
  }
}

BlockingCalls::BlockingCalls(int threads, size_t max_queued) : max_queued_(max_queued) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

BlockingCalls::~BlockingCalls() { stop(); }

bool BlockingCalls::post(std::function<void()> call) {
  MutexLock lock(mu_);
  if (stopping_ || queue_.size() >= max_queued_) return false;
  queue_.push_back(std::move(call));
  cv_.notify_one();
  return true;
}

bool BlockingCalls::stop(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  bool idle = true;
  {
    MutexLock lock(mu_);
    stopping_ = true;
    queue_.clear();
    cv_.notify_all();
    while (running_ > 0 && idle_cv_.wait_until(mu_, deadline)) {
    }
    idle = running_ == 0;
  }
  for (auto& t : threads_) {
    if (!t.joinable()) continue;
    if (idle)
      t.join();
    else
      t.detach();
  }
  threads_.clear();
  return idle;
}

void BlockingCalls::run() {
  for (;;) {
    std::function<void()> call;
    {
      MutexLock lock(mu_);
      while (!stopping_ && queue_.empty()) cv_.wait(mu_);
      if (stopping_) return;
      call = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    try {
      call();
    } catch (const std::exception& e) {
      static LogRate rate;
      if (int64_t more = 0; rate.allow(more))
        spdlog::error("http: a storage call threw: {} ({} more held back)", e.what(), more);
    } catch (...) {
      spdlog::error("http: a storage call threw an unknown exception");
    }
    MutexLock lock(mu_);
    if (--running_ == 0) idle_cv_.notify_all();
  }
}

}  // namespace quizflow::ingress
