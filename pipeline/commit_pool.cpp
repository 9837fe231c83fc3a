#include "pipeline/commit_pool.h"

#include <spdlog/spdlog.h>

#include "core/time_util.h"

namespace quizflow {

Result<std::unique_ptr<CommitPool>> CommitPool::open(Store& store, int threads,
                                                     BatchMetrics& metrics) {
  std::vector<std::unique_ptr<BatchWriter>> writers;
  for (int i = 0; i < threads; ++i) {
    auto w = store.open_writer(metrics);
    if (!w.ok()) return w.status();
    writers.push_back(std::move(w).value());
  }
  return std::unique_ptr<CommitPool>(new CommitPool(std::move(writers), metrics));
}

CommitPool::CommitPool(std::vector<std::unique_ptr<BatchWriter>> writers, BatchMetrics& metrics)
    : metrics_(metrics), writers_(std::move(writers)) {
  for (auto& w : writers_) threads_.emplace_back([this, &w] { run(*w); });
}

CommitPool::~CommitPool() { stop(); }

void CommitPool::submit(Job job) {
  MutexLock lock(mu_);
  jobs_.push_back(std::move(job));
  cv_.notify_one();
}

void CommitPool::stop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  writers_.clear();
}

size_t CommitPool::queued() const {
  MutexLock lock(mu_);
  return jobs_.size();
}

void CommitPool::run(BatchWriter& writer) {
  for (;;) {
    Job job;
    {
      MutexLock lock(mu_);
      while (!stopping_ && jobs_.empty()) cv_.wait(mu_);
      if (jobs_.empty()) return;  // stopping and nothing left
      job = std::move(jobs_.front());
      jobs_.pop_front();
      if (active_++ == 0 && metrics_.busy_since_ms.load(std::memory_order_relaxed) == 0)
        metrics_.busy_since_ms.store(steady_ms(), std::memory_order_relaxed);
    }
    try {
      job(writer);
    } catch (const std::exception& e) {
      spdlog::error("commit job threw (a bug: jobs settle their own failures): {}", e.what());
    } catch (...) {
      spdlog::error("commit job threw an unknown exception (a bug)");
    }
    MutexLock lock(mu_);
    if (--active_ == 0 && jobs_.empty()) metrics_.busy_since_ms.store(0, std::memory_order_relaxed);
  }
}

}  // namespace quizflow
