// batch stage: per-quiz buffers and the flush policy (spec §2). Plain state, no threads: the
// pipeline owns one BatchBuffers and calls it from a single serial graph node.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/request.h"

namespace quizflow::stages {

struct BatchPolicy {
  size_t max_size = 5000;    // flush when a quiz's buffer holds this many events
  int64_t max_delay_ms = 5;  // ... or when its oldest event has waited this long
};

// Events of one quiz taken for one transaction, in arrival order.
struct QuizBatch {
  int64_t quiz_id = 0;
  std::vector<EventRef> events;
};

// Not thread-safe: used from one thread at a time. At most one batch per quiz is in flight:
// while it commits, new events of that quiz keep filling the buffer (group commit).
class BatchBuffers {
 public:
  explicit BatchBuffers(BatchPolicy policy) : policy_(policy) {}

  void add(EventRef ev, int64_t now_ms);

  // Takes the batches due at `now_ms`: for every quiz with no batch in flight whose buffer
  // reached max_size, whose oldest event waited max_delay_ms, or that is closing (or every
  // pending quiz when `force`), up to max_size events. Marks those quizzes in flight.
  // At most `max_events` events in all: when more are due, the quizzes whose oldest event waited
  // longest go first and the last one taken may get a shorter batch (its rest waits its turn).
  std::vector<QuizBatch> take_due(int64_t now_ms, bool force = false, size_t max_events = SIZE_MAX);

  // The in-flight batch of `quiz_id` finished (committed or failed).
  void done(int64_t quiz_id);

  // Flush `quiz_id` at the next take_due regardless of size and delay.
  void close(int64_t quiz_id);

  // True when `quiz_id` has no buffered event and no batch in flight (it may then be finalized);
  // forgets its buffer.
  bool release_if_idle(int64_t quiz_id);

  size_t pending_events() const { return pending_events_; }
  size_t in_flight_batches() const { return in_flight_; }
  // The `n` quizzes with the most pending events: (quiz_id, events), largest first.
  std::vector<std::pair<int64_t, int64_t>> largest(size_t n) const;

  // When take_due will next have something to take without new events: `now_ms` when a quiz
  // without a batch in flight is due already, else the earliest time one becomes due by delay;
  // INT64_MAX when none waits (quizzes with a batch in flight wait for done()).
  int64_t next_due_ms(int64_t now_ms) const;

  // Milliseconds the oldest pending event has waited (0 when none).
  int64_t oldest_wait_ms(int64_t now_ms) const;

 private:
  struct Buffer {
    std::deque<EventRef> events;
    std::deque<int64_t> arrived_ms;  // parallel to events
    bool in_flight = false;
    bool closing = false;
  };

  BatchPolicy policy_;
  std::unordered_map<int64_t, Buffer> buffers_;
  std::unordered_set<int64_t> nonempty_;  // quizzes with pending events
  size_t pending_events_ = 0;
  size_t in_flight_ = 0;
};

}  // namespace quizflow::stages
