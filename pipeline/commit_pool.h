// The dedicated database threads: each owns one BatchWriter (one connection) and runs commit
// jobs handed to it, so no oneTBB worker ever waits on PostgreSQL.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "pipeline/store.h"

namespace quizflow {

class CommitPool {
 public:
  using Job = std::function<void(BatchWriter&)>;

  // Opens `threads` writers (throws when the store cannot connect) and starts the threads.
  CommitPool(Store& store, int threads);
  ~CommitPool();
  CommitPool(const CommitPool&) = delete;
  CommitPool& operator=(const CommitPool&) = delete;

  // Queues a job; one of the threads runs it. The queue holds at most one job per quiz with a
  // batch in flight (the batch stage's rule), so it is bounded by the in-flight budget.
  void submit(Job job);

  // Runs the queued jobs, then stops and joins the threads. Idempotent.
  void stop();

  size_t queued() const;

 private:
  void run(BatchWriter& writer);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;   // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::vector<std::unique_ptr<BatchWriter>> writers_;
  std::vector<std::thread> threads_;
};

}  // namespace quizflow
