// The engine's life cycle and its API for the ingress side: start (migrate, load the catalog
// and standings, open database threads, build the graph), submit answers, admin and read calls,
// health and stats, and a draining stop. This is the one header of pipeline/ that ingress/ and
// app/ include; it exposes only core/ types.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/consumer.h"
#include "core/metrics.h"
#include "core/mutex.h"
#include "core/notifier.h"
#include "core/quiz.h"
#include "core/request.h"
#include "core/standing.h"
#include "core/stats_report.h"
#include "core/status.h"
#include "core/store.h"
#include "pipeline/admission_gate.h"

namespace quizflow {

class CommitPool;
class Graph;
class OutboxRelay;
namespace stages {
class StandingsBook;
}

enum class SubmitResult { admitted, overloaded, stopped };

// Decodes one answer object with the rules POST /v1/answers applies to each item (strict
// schema, spec §3): for sources other than a request (event files). A schema failure is a
// `rejected` verdict with its code, message and field; no event then.
Item decode_answer(std::string_view json);
// Decodes a POST /v1/answers body into `r.items` with the engine's rules (stages/ingest): the
// number of items that decoded (their verdicts pending); a request-level problem sets
// `r.error`. For transports that take answers without this engine scoring them (Kafka mode).
size_t decode_request(Request& r, size_t max_batch);

struct QuizView {
  QuizDef def;
  QuizState state = QuizState::open;
};

struct LeaderboardPage {
  int64_t quiz_id = 0;
  int64_t total = 0;
  std::vector<StandingEntry> entries;
};

struct HealthReport {
  bool healthy = false;
  bool running = false;
  bool draining = false;  // stopping: admitted answers are being finished, new ones refused
  bool degraded = false;  // in-memory state may differ from PostgreSQL's (restart to reload)
  bool database_ok = false;
  std::string database_error;
  bool kafka_ok = false;
  std::string kafka_error;
  // Commits made progress: false when the database threads have had work for longer than
  // QUIZFLOW_HEALTH_MAX_COMMIT_STALL_MS and nothing committed meanwhile.
  bool commits_ok = true;
  std::string commits_error;
};

class Engine {
 public:
  Engine(Config config, std::unique_ptr<Store> store, std::unique_ptr<NotificationSink> sink);
  ~Engine();  // stop()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Migrates the schema, loads quizzes and standings, opens the database threads and starts
  // the graph. Not ok (nothing started) when storage is unreachable or the schema cannot be
  // migrated. Idempotent while running.
  Status start() QF_EXCLUDES(life_mu_);

  // Stops admitting, drains every buffered batch (each waiting request gets its answer),
  // flushes notifications. Idempotent; safe to call while other threads submit.
  void stop() QF_EXCLUDES(life_mu_);

  // From now on /health reports the engine draining (503: a load balancer takes the instance
  // out while it finishes what it admitted). Called on SIGTERM before the sources stop, and by
  // stop(); start() clears it.
  void begin_drain() { draining_.store(true, std::memory_order_release); }

  // Admits a POST /v1/answers body; `done` runs exactly once, on some engine thread, when
  // every item has its verdict (or the request failed as a whole). Never blocks on I/O.
  // Thread-safe, also against a concurrent stop(): `stopped` means `done` will not run.
  SubmitResult submit(std::string body, Request::DoneFn done);

  // Set before start(): a Kafka source feeds this engine.
  void set_consumer(ConsumerHooks hooks) { consumer_ = std::move(hooks); }
  const ConsumerHooks& consumer() const { return consumer_; }

  // A quiz this engine does not know (created through another instance) is loaded from
  // PostgreSQL into the catalog (one query, blocking; a miss is remembered for a second). Not
  // ok: the database could not be asked (the caller tries again later).
  Status learn_quiz(int64_t quiz_id);
  // Drops quizzes from memory (their partitions went to another instance); they are loaded
  // again from PostgreSQL on their next batch. Call only when none of their batches is in
  // flight.
  void forget_quizzes(const std::vector<int64_t>& quiz_ids);

  // Stores a quiz (idempotent by quiz_id), adds it to the catalog and schedules its
  // finalization. Blocks on one database round trip.
  Result<SaveQuizResult> create_quiz(const QuizDef& quiz);

  // Closes a quiz now (spec §3 POST /close): the state `closed` is stored, new answers are
  // refused, and the quiz is finalized once its buffered batches committed. Blocks on one
  // database round trip. `finalized`: it was finalized already; `unknown`: no such quiz.
  Result<CloseResult> close_quiz(int64_t quiz_id);

  // The read calls: nullopt when there is no such quiz. A live quiz in this engine's catalog is
  // served from memory (its standings are loaded on first use); a finalized one, and a live one
  // this engine does not hold (created through another instance, or scored by the instance
  // that consumes its partition), from PostgreSQL (blocking queries, nothing kept in memory).
  // Not ok: storage failed.
  Result<std::optional<QuizView>> quiz(int64_t quiz_id) const;
  Result<std::optional<LeaderboardPage>> leaderboard(int64_t quiz_id, size_t offset,
                                                     size_t limit) const;
  // Inner nullopt: the player has no standing.
  Result<std::optional<std::optional<StandingEntry>>> player(int64_t quiz_id,
                                                             int64_t user_id) const;
  // Empty before finalization.
  Result<std::optional<std::vector<RewardRow>>> rewards(int64_t quiz_id) const;

  // Quizzes by state (live ones by the clock and close requests) and how many are in memory.
  struct QuizCounts {
    int64_t open = 0, closed = 0, finalized = 0, in_memory = 0;
  };
  QuizCounts quiz_counts() const;

  HealthReport health() const QF_EXCLUDES(health_mu_);  // cached by a monitor thread; no I/O
  StatsReport stats() const;                            // every figure of spec §6
  const PipelineMetrics& metrics() const { return metrics_; }
  HttpMetrics& http_metrics() { return metrics_.http; }  // recorded by the HTTP ingress
  SinkStats sink_stats() const;
  PoolStats pool_stats() const;
  int64_t pending_events() const;  // buffered in the batch stage or committing
  std::vector<std::pair<int64_t, int64_t>> largest_pending() const;
  const Config& config() const { return config_; }
  bool running() const { return running_.load(std::memory_order_acquire); }
  int64_t uptime_s() const;

 private:
  void monitor_loop() QF_EXCLUDES(health_mu_);
  // Replaces the standings in memory of the quizzes a replay rebuilt since they were loaded
  // (their stored version is newer), so leaderboards agree with the table without waiting for
  // the quiz's next batch. Blocks on I/O (the monitor thread calls it).
  void refresh_rebuilt();
  // Takes up what other instances (or an import) did to live quizzes: a quiz closed or
  // finalized elsewhere is closed here and its finalization scheduled at once (the
  // finalization transaction finds it finalized, or finalizes it once its batches here are
  // in: one instance grants the rewards). Blocks on I/O (the monitor thread calls it).
  void sync_states();

  Config config_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<NotificationSink> sink_;
  // The stored quiz (one query, blocking); a miss is remembered for a second.
  Result<std::optional<QuizRecord>> stored_quiz(int64_t quiz_id) const;
  // Where a read of a quiz is answered from: this engine's memory (a live quiz of its catalog),
  // PostgreSQL's final standings (finalized), PostgreSQL's standings (a live quiz another
  // instance holds), or nowhere (no such quiz). Asks PostgreSQL only for a quiz not in `snap`.
  enum class Holder { none, memory, stored_final, stored_live };
  Result<Holder> holder_of(int64_t quiz_id, const CatalogSnapshot& snap) const;
  // Loads a live quiz's standings into memory unless they are (one query, blocking).
  Status ensure_loaded(int64_t quiz_id) const;
  bool left_memory_meanwhile(int64_t quiz_id) const;
  void schedule_finalization(int64_t quiz_id, int64_t due_ms);

  Catalog catalog_;
  ConsumerHooks consumer_;
  mutable Mutex learn_mu_;
  mutable std::unordered_map<int64_t, int64_t> unknown_until_ms_ QF_GUARDED_BY(learn_mu_);
  std::unique_ptr<stages::StandingsBook> standings_;
  PipelineMetrics metrics_;
  std::unique_ptr<CommitPool> commits_;
  std::unique_ptr<OutboxRelay> relay_;
  // Set by start() before the gate opens, reset by stop() after it closed: submit() reads it
  // only inside the gate, readers of its figures under graph_mu_.
  std::unique_ptr<Graph> graph_;
  AdmissionGate gate_;
  std::atomic<bool> running_{false};
  std::atomic<bool> draining_{false};
  Mutex life_mu_;                 // serializes start() and stop()
  mutable SharedMutex graph_mu_;  // readers of graph_'s figures vs stop() resetting it
  std::atomic<int64_t> started_ms_{0};

  // When the monitor's running PostgreSQL call (the ping, the rebuilt-standings and state
  // checks) / Kafka check began (steady ms; 0: none running): a call that does not return (a
  // hung server) is reported by health() without waiting for it.
  std::atomic<int64_t> db_check_since_ms_{0};  // the ping
  std::atomic<int64_t> db_query_since_ms_{0};  // the rebuilt-standings and state checks
  std::atomic<int64_t> kafka_check_since_ms_{0};

  mutable Mutex health_mu_;
  CondVar health_cv_;
  HealthReport health_ QF_GUARDED_BY(health_mu_);
  bool stop_monitor_ QF_GUARDED_BY(health_mu_) = false;
  std::thread monitor_;
};

}  // namespace quizflow
