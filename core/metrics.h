// Live figures of every stage (spec §2, §6). Recording is lock-free: atomics and a ring of
// latency samples; readers take a consistent-enough snapshot.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace quizflow {

// The last kSize samples of a latency, in microseconds. Writers never block.
class LatencyWindow {
 public:
  static constexpr size_t kSize = 2048;
  void record_us(int64_t us) {
    const uint64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    samples_[i % kSize].store(us, std::memory_order_relaxed);
    sum_us_.fetch_add(us, std::memory_order_relaxed);
  }
  uint64_t count() const { return next_.load(std::memory_order_relaxed); }
  double sum_ms() const {
    return static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1000.0;
  }
  // Percentile (0-100) in milliseconds over the samples held; 0 when none.
  double percentile_ms(double pct) const {
    const uint64_t n = std::min<uint64_t>(next_.load(std::memory_order_relaxed), kSize);
    if (n == 0) return 0.0;
    std::vector<int64_t> v(n);
    for (uint64_t i = 0; i < n; ++i) v[i] = samples_[i].load(std::memory_order_relaxed);
    const size_t k =
        std::min<size_t>(n - 1, static_cast<size_t>(pct / 100.0 * static_cast<double>(n)));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return static_cast<double>(v[k]) / 1000.0;
  }

 private:
  std::atomic<uint64_t> next_{0};
  std::atomic<int64_t> sum_us_{0};
  std::array<std::atomic<int64_t>, kSize> samples_{};
};

// Counters of one stage. Units are events (answers), not chunks.
struct StageMetrics {
  std::atomic<int64_t> backlog{0};  // handed to the stage, not yet started
  std::atomic<int64_t> in_flight{
      0};  // chunks being processed; batch: events buffered or committing
  std::atomic<int64_t> processed{0};  // passed on
  std::atomic<int64_t> rejected{0};   // ended here with a rejection
  std::atomic<int64_t> failed{0};     // ended here by a failure (storage, transport)
  LatencyWindow latency;              // per chunk: time spent in the stage
  // Longest wait before this stage started an item: the queue wait of the chunk it started
  // last (for batch: the age of the oldest buffered event). Shown as 0 when backlog is 0.
  std::atomic<int64_t> oldest_wait_us{0};
};

// Where batch transactions spend their time: the batch writer's timed steps
// (egress/batch_writer.h) in the order they run, total microseconds and runs of each since
// start. The timeline of a quiz's transactions, from any running engine.
inline constexpr std::array<const char*, 9> kWriterSteps = {
    "encode_events", "insert_new_events", "copy_events", "derive",    "split_rows",
    "copy_counted",  "copy_standings",    "encode_rows", "round_trip"};
struct WriterStepTimes {
  std::array<std::atomic<int64_t>, kWriterSteps.size()> us{}, runs{};
  void record(const char* step, int64_t micros) {  // other names are not timed
    for (size_t i = 0; i < kWriterSteps.size(); ++i) {
      if (std::strcmp(step, kWriterSteps[i]) != 0) continue;
      us[i].fetch_add(micros, std::memory_order_relaxed);
      runs[i].fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
};

struct BatchMetrics {
  std::atomic<int64_t> committed{0};  // transactions committed
  std::atomic<int64_t> failed{0};     // transactions that failed
  std::atomic<int64_t> rows{0};       // answers newly stored by committed batches
  std::atomic<int64_t> retries{0};    // attempts redone after a connection lost before COMMIT
  std::atomic<int64_t> state_mismatches{0};   // stored rows differed from memory
  std::atomic<int64_t> stale_reloads{0};      // quizzes reloaded after a replay rebuilt them
  std::atomic<int64_t> replay_refreshes{0};   // rebuilt quizzes reloaded between batches
  std::atomic<int64_t> in_doubt_resolved{0};  // COMMITs of unknown outcome resolved by a lookup
  std::atomic<int64_t> last_commit_ms{0};
  // Commit progress for /health (steady-clock ms): when a transaction last committed, and since
  // when the database threads have had work without a break (0: idle).
  std::atomic<int64_t> last_success_at_ms{0};
  std::atomic<int64_t> busy_since_ms{0};
  LatencyWindow commit;  // commit time per batch
  WriterStepTimes steps;
};

// Quiz lifecycle and outbox figures (spec §6 `quizzes`, `outbox`).
struct LifecycleMetrics {
  std::atomic<int64_t> finalizations{0};      // quizzes this engine finalized
  std::atomic<int64_t> finalize_failures{0};  // finalization attempts that failed (retried)
  std::atomic<int64_t> rewards_granted{0};    // rewards granted by this engine's finalizations
  std::atomic<int64_t> relayed{0};            // outbox messages delivered and marked sent
  std::atomic<int64_t> resent{0};             // outbox rows (re)published by the relay's sweep
  std::atomic<int64_t> undelivered{0};        // outbox rows whose delivery failed (kept, resent)
  std::atomic<int64_t> unsent{0};             // outbox messages stored, not yet sent (polled)
  std::atomic<int64_t> oldest_unsent_ms{0};   // age of the oldest unsent row (polled)
};

// The names of the stages, in flow order; the index into PipelineMetrics::stages.
inline constexpr std::array<const char*, 5> kStageNames = {"ingest", "validate", "batch", "score",
                                                           "notify"};
enum StageIndex : size_t { kIngest = 0, kValidate, kBatch, kScore, kNotify };

// The HTTP door's own figures, recorded by ingress/ (spec §3 limits).
struct HttpMetrics {
  std::atomic<int64_t> timed_out{0};            // answered 503 by QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS
  std::atomic<int64_t> connections{0};          // client connections open
  std::atomic<int64_t> connections_refused{0};  // closed at once: QUIZFLOW_HTTP_MAX_CONNECTIONS
};

struct PipelineMetrics {
  std::array<StageMetrics, kStageNames.size()> stages;
  BatchMetrics batches;
  LifecycleMetrics lifecycle;
  HttpMetrics http;
  std::atomic<int64_t> http_overloaded{0};   // answered 503 at the door
  std::atomic<int64_t> events_in_flight{0};  // admitted, not yet answered
  std::atomic<int64_t> internal_errors{0};   // exceptions caught in nodes and callbacks
  // Set when the engine's in-memory state may differ from PostgreSQL's (an exception it could
  // not settle): /health answers 503 until a restart reloads the state.
  std::atomic<bool> degraded{false};
};

}  // namespace quizflow
