// What keeps an HTTP answer bounded in time whatever the database does (spec §3,
// QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS): a reply that either its completion or its deadline sends,
// whichever comes first (the other finds it claimed), the thread that fires the deadlines, and
// a small bounded pool that runs the storage calls of admin and read requests off Pistache's
// threads (a hung PostgreSQL then holds those calls, never /health or the answer path).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "core/mutex.h"

namespace quizflow::ingress {

// Something to answer by a deadline; expire() runs on the deadline thread unless the reply was
// answered (claimed) before.
class Expirable {
 public:
  virtual ~Expirable() = default;
  virtual void expire() noexcept = 0;
};

// Fires the deadlines of replies, all with the same timeout (so they expire in the order they
// were added). Holds replies weakly: a reply answered in time is freed at once.
class ReplyDeadlines {
 public:
  using Clock = std::chrono::steady_clock;
  explicit ReplyDeadlines(std::chrono::milliseconds timeout);
  ~ReplyDeadlines();  // stop()
  ReplyDeadlines(const ReplyDeadlines&) = delete;
  ReplyDeadlines& operator=(const ReplyDeadlines&) = delete;

  // `r` expires `timeout` from now unless it was answered by then (or freed).
  void watch(const std::shared_ptr<Expirable>& r) QF_EXCLUDES(mu_);
  // Joins the thread; pending deadlines do not fire. Idempotent.
  void stop() QF_EXCLUDES(mu_);
  size_t watched() const QF_EXCLUDES(mu_);

 private:
  void run() QF_EXCLUDES(mu_);

  const std::chrono::milliseconds timeout_;
  mutable Mutex mu_;
  CondVar cv_;
  std::deque<std::pair<Clock::time_point, std::weak_ptr<Expirable>>> queue_ QF_GUARDED_BY(mu_);
  bool stopping_ QF_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// A fixed set of threads with a bounded queue for calls that may block on storage.
class BlockingCalls {
 public:
  BlockingCalls(int threads, size_t max_queued);
  ~BlockingCalls();  // stop()
  BlockingCalls(const BlockingCalls&) = delete;
  BlockingCalls& operator=(const BlockingCalls&) = delete;

  // Queues `call`; false (not queued) when the queue is full or the pool stopped. `call` must
  // not throw (exceptions are caught and logged).
  bool post(std::function<void()> call) QF_EXCLUDES(mu_);
  // Runs nothing more: queued calls are dropped (their replies expire) and the threads joined
  // once their running calls return, waiting at most `limit`. False when a call is still
  // running then (storage hung): the threads are detached and still use this object, which
  // must then never be destroyed. Idempotent.
  bool stop(std::chrono::milliseconds limit = std::chrono::hours(24)) QF_EXCLUDES(mu_);

 private:
  void run() QF_EXCLUDES(mu_);

  const size_t max_queued_;
  Mutex mu_;
  CondVar cv_;
  CondVar idle_cv_;
  std::deque<std::function<void()>> queue_ QF_GUARDED_BY(mu_);
  bool stopping_ QF_GUARDED_BY(mu_) = false;
  int running_ QF_GUARDED_BY(mu_) = 0;  // calls being run
  std::vector<std::thread> threads_;
};

}  // namespace quizflow::ingress
