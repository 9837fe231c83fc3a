#include "pipeline/commit_pool.h"

namespace quizflow {

CommitPool::CommitPool(Store& store, int threads) {
  for (int i = 0; i < threads; ++i) writers_.push_back(store.open_writer());
  for (auto& w : writers_) threads_.emplace_back([this, &w] { run(*w); });
}

CommitPool::~CommitPool() { stop(); }

void CommitPool::submit(Job job) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void CommitPool::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  writers_.clear();
}

size_t CommitPool::queued() const {
  std::lock_guard lock(mu_);
  return jobs_.size();
}

void CommitPool::run(BatchWriter& writer) {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping and nothing left
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job(writer);
  }
}

}  // namespace quizflow
