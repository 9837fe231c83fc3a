#include "pipeline/stats.h"

#include "core/metrics.h"
#include "pipeline/engine.h"

namespace quizflow {
namespace {

constexpr double kMsToS = 0.001;

class Builder {
 public:
  void gauge(std::string json, std::string family, std::string help, double v,
             JsonType t = JsonType::integer, double scale = 1,
             std::vector<std::pair<std::string, std::string>> labels = {}) {
    out.push_back(Figure{std::move(json), std::move(family), "", FigureKind::gauge, std::move(help),
                         std::move(labels), v, scale, t});
  }
  // `scale` converts the JSON value to the Prometheus one (e.g. µs in JSON, seconds there).
  void counter(std::string json, std::string family, std::string help, double v,
               std::vector<std::pair<std::string, std::string>> labels = {}, double scale = 1) {
    out.push_back(Figure{std::move(json), std::move(family), "", FigureKind::counter,
                         std::move(help), std::move(labels), v, scale, JsonType::integer});
  }
  // A latency summary: p50 and p99 (quantile samples), count and sum; JSON in ms.
  void summary(const std::string& json, const std::string& family, const std::string& help,
               const LatencyWindow& w, std::vector<std::pair<std::string, std::string>> labels) {
    auto with = [&](const char* q) {
      auto l = labels;
      l.emplace_back("quantile", q);
      return l;
    };
    out.push_back(Figure{json + ".p50", family, "", FigureKind::summary, help, with("0.5"),
                         w.percentile_ms(50), kMsToS, JsonType::number});
    out.push_back(Figure{json + ".p99", family, "", FigureKind::summary, help, with("0.99"),
                         w.percentile_ms(99), kMsToS, JsonType::number});
    out.push_back(Figure{json + ".sum", family, "_sum", FigureKind::summary, help, labels,
                         w.sum_ms(), kMsToS, JsonType::number});
    out.push_back(Figure{json + ".count", family, "_count", FigureKind::summary, help, labels,
                         static_cast<double>(w.count()), 1, JsonType::integer});
  }
  std::vector<Figure> out;
};

}  // namespace

StatsReport collect_stats(const Engine& engine) {
  StatsReport r;
  r.running = engine.running();
  Builder b;
  const PipelineMetrics& m = engine.metrics();
  b.gauge("uptime_s", "quizflow_uptime_seconds", "Seconds since the engine started.",
          static_cast<double>(engine.uptime_s()));
  for (size_t i = 0; i < kStageNames.size(); ++i) {
    const std::string name = kStageNames[i];
    const std::string p = "stages." + name + ".";
    const StageMetrics& s = m.stages[i];
    const std::vector<std::pair<std::string, std::string>> l = {{"stage", name}};
    const int64_t backlog = s.backlog.load(std::memory_order_relaxed);
    b.gauge(p + "backlog", "quizflow_stage_backlog", "Items handed to the stage, not started.",
            static_cast<double>(backlog), JsonType::integer, 1, l);
    b.gauge(p + "in_flight", "quizflow_stage_in_flight",
            "Chunks being processed (batch: events buffered or committing).",
            static_cast<double>(s.in_flight.load(std::memory_order_relaxed)), JsonType::integer, 1,
            l);
    b.counter(p + "processed", "quizflow_stage_processed_total", "Events passed on by the stage.",
              static_cast<double>(s.processed.load(std::memory_order_relaxed)), l);
    b.counter(p + "rejected", "quizflow_stage_rejected_total", "Events rejected by the stage.",
              static_cast<double>(s.rejected.load(std::memory_order_relaxed)), l);
    b.counter(p + "failed", "quizflow_stage_failed_total",
              "Events that failed in the stage (storage or transport).",
              static_cast<double>(s.failed.load(std::memory_order_relaxed)), l);
    const bool waiting = backlog > 0 || (i == kBatch && s.in_flight.load() > 0);
    b.gauge(p + "oldest_wait_ms", "quizflow_stage_oldest_wait_seconds",
            "Age of the oldest waiting item (batch: oldest buffered event).",
            waiting ? static_cast<double>(s.oldest_wait_us.load()) / 1000.0 : 0.0, JsonType::number,
            kMsToS, l);
    b.summary(p + "latency_ms", "quizflow_stage_latency_seconds",
              "Time a chunk spent in the stage, over the last 2048 chunks.", s.latency, l);
  }
  const SinkStats ks = engine.sink_stats();
  b.gauge("message_queue.queue_size", "quizflow_producer_queue_messages",
          "Notifications waiting in the Kafka producer.", static_cast<double>(ks.queue_size));
  b.counter("message_queue.total_processed", "quizflow_producer_delivered_total",
            "Notifications acknowledged by Kafka.", static_cast<double>(ks.delivered));
  b.counter("message_queue.failed", "quizflow_producer_failed_total",
            "Notifications that failed delivery or were refused.", static_cast<double>(ks.failed));
  b.gauge("message_queue.running", "quizflow_producer_running", "1 when the producer runs.",
          ks.running ? 1 : 0, JsonType::boolean);
  b.gauge("message_queue.num_workers", "quizflow_producer_workers",
          "Producer threads polling delivery reports.", 1);
  const PoolStats ps = engine.pool_stats();
  b.gauge("database_pool.pool_size", "quizflow_db_pool_size", "Connections kept (DB_POOL_SIZE).",
          static_cast<double>(ps.pool_size));
  b.gauge("database_pool.max_overflow", "quizflow_db_pool_max_overflow",
          "Extra connections allowed under load (DB_MAX_OVERFLOW).",
          static_cast<double>(ps.max_overflow));
  b.gauge("database_pool.checked_out_connections", "quizflow_db_pool_checked_out_connections",
          "Connections in use now.", static_cast<double>(ps.checked_out));
  b.gauge("database_pool.overflow_connections", "quizflow_db_pool_overflow_connections",
          "Connections open beyond pool_size.", static_cast<double>(ps.overflow));
  b.gauge("database_pool.total_connections", "quizflow_db_pool_connections",
          "Open connections, idle or in use.", static_cast<double>(ps.total));
  b.counter("database_pool.wait_count", "quizflow_db_pool_waits_total",
            "Checkouts that had to wait for a connection.", static_cast<double>(ps.wait_count));
  b.gauge("database_pool.wait_ms_p99", "quizflow_db_pool_wait_p99_seconds",
          "99th percentile of the checkout wait.", ps.wait_ms_p99, JsonType::number, kMsToS);
  b.counter("database_pool.timeouts", "quizflow_db_pool_timeouts_total",
            "Checkouts that gave up (the request got 503).", static_cast<double>(ps.timeouts));
  b.counter("database_pool.discarded", "quizflow_db_pool_discarded_total",
            "Broken connections dropped and replaced.", static_cast<double>(ps.discarded));
  const BatchMetrics& bm = m.batches;
  b.counter("batches.committed", "quizflow_batches_committed_total",
            "Batch transactions committed (each holds one or more quizzes' batches).",
            static_cast<double>(bm.committed.load()));
  b.counter("batches.failed", "quizflow_batches_failed_total",
            "Batch transactions that failed (their requests got 503).",
            static_cast<double>(bm.failed.load()));
  b.counter("batches.rows", "quizflow_batch_rows_total",
            "Answers newly stored by committed batches.", static_cast<double>(bm.rows.load()));
  b.counter("batches.retries", "quizflow_batch_retries_total",
            "Transaction attempts redone on a new connection after one was lost before COMMIT.",
            static_cast<double>(bm.retries.load()));
  b.counter("batches.state_mismatches", "quizflow_batch_state_mismatches_total",
            "Transactions that found stored rows other than the engine's state (overwritten).",
            static_cast<double>(bm.state_mismatches.load()));
  b.counter("batches.stale_reloads", "quizflow_batch_stale_reloads_total",
            "Transactions whose quizzes were reloaded because a replay had rebuilt them.",
            static_cast<double>(bm.stale_reloads.load()));
  b.counter("batches.replay_refreshes", "quizflow_batch_replay_refreshes_total",
            "Quizzes whose standings in memory were replaced after a replay rebuilt them.",
            static_cast<double>(bm.replay_refreshes.load()));
  b.counter("batches.in_doubt_resolved", "quizflow_batch_in_doubt_resolved_total",
            "COMMITs of unknown outcome (connection lost at COMMIT) resolved by a lookup.",
            static_cast<double>(bm.in_doubt_resolved.load()));
  b.gauge("batches.last_commit_ms", "quizflow_batch_last_commit_seconds",
          "Duration of the last commit.", static_cast<double>(bm.last_commit_ms.load()),
          JsonType::integer, kMsToS);
  b.summary("batches.commit_ms", "quizflow_batch_commit_seconds",
            "Batch transaction time, over the last 2048 batches.", bm.commit, {});
  for (size_t i = 0; i < kWriterSteps.size(); ++i) {
    const std::string step = kWriterSteps[i];
    const std::vector<std::pair<std::string, std::string>> l = {{"step", step}};
    b.counter("batches.steps." + step + ".us", "quizflow_batch_step_seconds_total",
              "Time spent in each step of the batch transactions (egress/batch_writer.h).",
              static_cast<double>(bm.steps.us[i].load()), l, 1e-6);
    b.counter("batches.steps." + step + ".runs", "quizflow_batch_step_runs_total",
              "Runs of each step of the batch transactions.",
              static_cast<double>(bm.steps.runs[i].load()), l);
  }
  b.gauge("batches.pending_events", "quizflow_batch_pending_events",
          "Events buffered in the batch stage or committing.",
          static_cast<double>(engine.pending_events()));
  const LifecycleMetrics& lm = m.lifecycle;
  b.gauge("outbox.unsent", "quizflow_outbox_unsent_messages",
          "Notifications stored in the outbox, not yet delivered (polled every second).",
          static_cast<double>(lm.unsent.load()));
  b.gauge("outbox.oldest_unsent_ms", "quizflow_outbox_oldest_unsent_seconds",
          "Age of the oldest unsent outbox row (polled every second).",
          static_cast<double>(lm.oldest_unsent_ms.load()), JsonType::integer, kMsToS);
  b.counter("outbox.relayed", "quizflow_outbox_relayed_total",
            "Outbox notifications delivered to Kafka and marked sent.",
            static_cast<double>(lm.relayed.load()));
  b.counter("outbox.resent", "quizflow_outbox_resent_total",
            "Outbox rows published again by the relay's sweep (restart, failed delivery).",
            static_cast<double>(lm.resent.load()));
  b.counter("outbox.undelivered", "quizflow_outbox_undelivered_total",
            "Outbox rows whose delivery failed (kept and published again).",
            static_cast<double>(lm.undelivered.load()));
  const Engine::QuizCounts qc = engine.quiz_counts();
  for (const auto& [state, n] : {std::pair{"open", qc.open}, std::pair{"closed", qc.closed},
                                 std::pair{"finalized", qc.finalized}}) {
    b.gauge(std::string("quizzes.") + state, "quizflow_quizzes", "Quizzes by state.",
            static_cast<double>(n), JsonType::integer, 1, {{"state", state}});
  }
  b.gauge("quizzes.in_memory", "quizflow_quizzes_in_memory",
          "Quizzes whose standings are held in memory.", static_cast<double>(qc.in_memory));
  b.counter("quizzes.finalizations", "quizflow_finalizations_total",
            "Quizzes finalized by this engine.", static_cast<double>(lm.finalizations.load()));
  b.counter("quizzes.finalize_failures", "quizflow_finalize_failures_total",
            "Finalization attempts that failed (retried a second later).",
            static_cast<double>(lm.finalize_failures.load()));
  b.counter("quizzes.rewards_granted", "quizflow_rewards_granted_total",
            "Rewards granted by this engine's finalizations.",
            static_cast<double>(lm.rewards_granted.load()));
  b.counter("http.overloaded", "quizflow_http_overloaded_total",
            "Answer requests refused with 503 because the pipeline was full.",
            static_cast<double>(m.http_overloaded.load()));
  b.counter("http.timed_out", "quizflow_http_timed_out_total",
            "Requests answered 503 by QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS (outcome unknown).",
            static_cast<double>(m.http.timed_out.load()));
  b.gauge("http.connections", "quizflow_http_connections", "Client connections open.",
          static_cast<double>(m.http.connections.load()));
  b.counter("http.connections_refused", "quizflow_http_connections_refused_total",
            "Connections closed at once: QUIZFLOW_HTTP_MAX_CONNECTIONS were open.",
            static_cast<double>(m.http.connections_refused.load()));
  b.gauge("http.events_in_flight", "quizflow_events_in_flight",
          "Answers admitted and not yet answered.", static_cast<double>(m.events_in_flight.load()));
  b.gauge("http.max_in_flight", "quizflow_events_in_flight_limit",
          "Admission limit (QUIZFLOW_MAX_IN_FLIGHT).",
          static_cast<double>(engine.config().max_in_flight_events));
  b.counter("engine.internal_errors", "quizflow_internal_errors_total",
            "Exceptions caught in graph nodes and completion callbacks (docs/error-policy.md).",
            static_cast<double>(m.internal_errors.load()));
  b.gauge("engine.degraded", "quizflow_degraded",
          "1 when in-memory state may differ from PostgreSQL's (restart to reload).",
          m.degraded.load() ? 1 : 0, JsonType::boolean);
  b.gauge("engine.healthy", "quizflow_healthy",
          "1 when GET /health answers 200 (every check ok; 0 also while draining).",
          engine.health().healthy ? 1 : 0, JsonType::boolean);
  if (engine.consumer().stats) {  // spec §6: only when consuming Kafka
    const ConsumerStats cs = engine.consumer().stats();
    for (const auto& [partition, lag] : cs.lag)
      b.gauge("consumer.lag." + std::to_string(partition), "quizflow_consumer_lag_messages",
              "Messages of quiz.answers not yet settled, per assigned partition.",
              static_cast<double>(lag), JsonType::integer, 1,
              {{"partition", std::to_string(partition)}});
    b.gauge("consumer.paused", "quizflow_consumer_paused_partitions",
            "Partitions paused because the engine holds too many answers.",
            static_cast<double>(cs.paused));
    b.counter("consumer.consumed", "quizflow_consumer_messages_total",
              "Messages taken from quiz.answers.", static_cast<double>(cs.consumed));
    b.counter("consumer.dead_letters", "quizflow_consumer_dead_letters_total",
              "Messages sent to the dead-letter topic (malformed or rejected).",
              static_cast<double>(cs.dead_letters));
    b.counter("consumer.retried", "quizflow_consumer_retried_total",
              "Messages submitted again after a storage failure.", static_cast<double>(cs.retried));
    b.gauge("consumer.in_engine", "quizflow_consumer_in_engine_messages",
            "Messages consumed and not yet settled.", static_cast<double>(cs.in_engine));
  }
  r.figures = std::move(b.out);
  r.largest_pending = engine.largest_pending();
  return r;
}

}  // namespace quizflow
