#include "stages/batch.h"

#include <algorithm>

namespace quizflow::stages {

void BatchBuffers::add(EventRef ev, int64_t now_ms) {
  const int64_t quiz = ev.event().quiz_id;
  Buffer& b = buffers_[quiz];
  b.events.push_back(std::move(ev));
  b.arrived_ms.push_back(now_ms);
  nonempty_.insert(quiz);
  ++pending_events_;
}

std::vector<QuizBatch> BatchBuffers::take_due(int64_t now_ms, bool force, size_t max_events) {
  // The due quizzes: (oldest arrival, quiz).
  std::vector<std::pair<int64_t, int64_t>> due;
  size_t due_events = 0;
  for (int64_t quiz : nonempty_) {
    const Buffer& b = buffers_.at(quiz);
    if (b.in_flight) continue;
    if (force || b.closing || b.events.size() >= policy_.max_size ||
        now_ms - b.arrived_ms.front() >= policy_.max_delay_ms) {
      due.emplace_back(b.arrived_ms.front(), quiz);
      due_events += std::min(b.events.size(), policy_.max_size);
    }
  }
  // Over the budget: longest waiting first, so that no quiz starves behind busier ones.
  if (due_events > max_events) std::sort(due.begin(), due.end());
  std::vector<QuizBatch> out;
  size_t budget = max_events;
  for (const auto& [arrived, quiz] : due) {
    if (budget == 0) break;
    Buffer& b = buffers_.at(quiz);
    const size_t n = std::min({b.events.size(), policy_.max_size, budget});
    budget -= n;
    QuizBatch batch;
    batch.quiz_id = quiz;
    batch.events.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      batch.events.push_back(std::move(b.events.front()));
      b.events.pop_front();
      b.arrived_ms.pop_front();
    }
    pending_events_ -= n;
    b.in_flight = true;
    ++in_flight_;
    out.push_back(std::move(batch));
    if (b.events.empty()) {
      b.closing = false;
      nonempty_.erase(quiz);
    }
  }
  return out;
}

void BatchBuffers::done(int64_t quiz_id) {
  auto it = buffers_.find(quiz_id);
  if (it == buffers_.end() || !it->second.in_flight) return;
  it->second.in_flight = false;
  --in_flight_;
  if (it->second.events.empty() && !it->second.closing) buffers_.erase(it);
}

void BatchBuffers::close(int64_t quiz_id) {
  Buffer& b = buffers_[quiz_id];
  b.closing = true;
  if (!b.events.empty()) nonempty_.insert(quiz_id);
}

bool BatchBuffers::release_if_idle(int64_t quiz_id) {
  auto it = buffers_.find(quiz_id);
  if (it == buffers_.end()) return true;
  if (it->second.in_flight || !it->second.events.empty()) return false;
  buffers_.erase(it);
  return true;
}

int64_t BatchBuffers::next_due_ms(int64_t now_ms) const {
  int64_t next = INT64_MAX;
  for (int64_t quiz : nonempty_) {
    const Buffer& b = buffers_.at(quiz);
    if (b.in_flight) continue;
    if (b.closing || b.events.size() >= policy_.max_size) return now_ms;
    next = std::min(next, std::max(now_ms, b.arrived_ms.front() + policy_.max_delay_ms));
  }
  return next;
}

int64_t BatchBuffers::oldest_wait_ms(int64_t now_ms) const {
  int64_t oldest = 0;
  for (int64_t quiz : nonempty_) {
    const auto& b = buffers_.at(quiz);
    if (!b.arrived_ms.empty()) oldest = std::max(oldest, now_ms - b.arrived_ms.front());
  }
  return oldest;
}

}  // namespace quizflow::stages

namespace quizflow::stages {

std::vector<std::pair<int64_t, int64_t>> BatchBuffers::largest(size_t n) const {
  std::vector<std::pair<int64_t, int64_t>> all;
  for (int64_t quiz : nonempty_)
    all.emplace_back(quiz, static_cast<int64_t>(buffers_.at(quiz).events.size()));
  const size_t k = std::min(n, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k), all.end(),
                    [](const auto& a, const auto& b) {
                      return a.second != b.second ? a.second > b.second : a.first < b.first;
                    });
  all.resize(k);
  return all;
}

}  // namespace quizflow::stages
