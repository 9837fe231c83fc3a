// The dedicated database threads: each owns one BatchWriter (one connection) and runs commit
// jobs handed to it, so no oneTBB worker ever waits on PostgreSQL.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "core/mutex.h"
#include "core/status.h"
#include "core/store.h"

namespace quizflow {

class CommitPool {
 public:
  // A job must not throw; one that does is logged and counted as an internal error, and the
  // thread goes on with the next job.
  using Job = std::function<void(BatchWriter&)>;

  // Opens `threads` writers and starts the threads; not ok when a writer cannot be opened.
  // The writers count their retries and in-doubt resolutions in `metrics`.
  static Result<std::unique_ptr<CommitPool>> open(Store& store, int threads, BatchMetrics& metrics);
  ~CommitPool();
  CommitPool(const CommitPool&) = delete;
  CommitPool& operator=(const CommitPool&) = delete;

  // Queues a job; one of the threads runs it. The queue holds at most one job per writer
  // (the batch stage keeps at most DB_WRITERS transactions in flight).
  void submit(Job job) QF_EXCLUDES(mu_);

  // Runs the queued jobs, then stops and joins the threads. Idempotent.
  void stop() QF_EXCLUDES(mu_);

  size_t queued() const QF_EXCLUDES(mu_);

 private:
  CommitPool(std::vector<std::unique_ptr<BatchWriter>> writers, BatchMetrics& metrics);
  void run(BatchWriter& writer) QF_EXCLUDES(mu_);

  BatchMetrics& metrics_;  // busy_since_ms: since when jobs have been running without a break
  int active_ QF_GUARDED_BY(mu_) = 0;

  mutable Mutex mu_;
  CondVar cv_;
  std::deque<Job> jobs_ QF_GUARDED_BY(mu_);
  bool stopping_ QF_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<BatchWriter>> writers_;
  std::vector<std::thread> threads_;
};

}  // namespace quizflow
