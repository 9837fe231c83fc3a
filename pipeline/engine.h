// The engine's life cycle and its API for the ingress side: start (migrate, load the catalog
// and standings, open database threads, build the graph), submit answers, admin and read calls,
// health and stats, and a draining stop.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/config.h"
#include "pipeline/metrics.h"
#include "pipeline/notifier.h"
#include "pipeline/quiz.h"
#include "pipeline/request.h"
#include "pipeline/store.h"
#include "stages/score.h"

namespace quizflow {

class CommitPool;
class Graph;

enum class SubmitResult { admitted, overloaded, stopped };

struct QuizView {
  QuizDef def;
  QuizState state = QuizState::open;
};

struct LeaderboardPage {
  int64_t quiz_id = 0;
  int64_t total = 0;
  std::vector<stages::StandingEntry> entries;
};

struct HealthReport {
  bool healthy = false;
  bool running = false;
  bool database_ok = false;
  std::string database_error;
  bool kafka_ok = false;
  std::string kafka_error;
};

class Engine {
 public:
  Engine(Config config, std::unique_ptr<Store> store, std::unique_ptr<NotificationSink> sink);
  ~Engine();  // stop()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Migrates the schema, loads quizzes and standings, opens the database threads and starts
  // the graph. Throws (std::exception with a message) when storage is unreachable.
  void start();

  // Stops admitting, drains every buffered batch (each waiting request gets its answer),
  // flushes notifications. Idempotent.
  void stop();

  // Admits a POST /v1/answers body; `done` runs exactly once, on some engine thread, when
  // every item has its verdict (or the request failed as a whole). Never blocks on I/O.
  SubmitResult submit(std::string body, Request::DoneFn done);

  // Stores a quiz (idempotent by quiz_id) and adds it to the catalog. Blocks on one database
  // round trip; throws on storage failure.
  SaveQuizResult create_quiz(const QuizDef& quiz);

  std::optional<QuizView> quiz(int64_t quiz_id) const;
  // nullopt: no such quiz.
  std::optional<LeaderboardPage> leaderboard(int64_t quiz_id, size_t offset, size_t limit) const;
  // Outer nullopt: no such quiz; inner nullopt: the player has no standing.
  std::optional<std::optional<stages::StandingEntry>> player(int64_t quiz_id,
                                                             int64_t user_id) const;

  HealthReport health() const;  // cached by a monitor thread; never blocks on I/O
  const PipelineMetrics& metrics() const { return metrics_; }
  SinkStats sink_stats() const;
  PoolStats pool_stats() const;
  int64_t pending_events() const;  // buffered in the batch stage or committing
  std::vector<std::pair<int64_t, int64_t>> largest_pending() const;
  const Config& config() const { return config_; }
  bool running() const { return running_.load(std::memory_order_acquire); }
  int64_t uptime_s() const;

 private:
  void monitor_loop();

  Config config_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<NotificationSink> sink_;
  Catalog catalog_;
  stages::StandingsBook standings_;
  PipelineMetrics metrics_;
  std::unique_ptr<CommitPool> commits_;
  std::unique_ptr<Graph> graph_;
  std::atomic<bool> running_{false};
  std::atomic<bool> accepting_{false};
  std::atomic<int64_t> submits_in_progress_{0};
  std::mutex stop_mu_;                  // serializes start() and stop()
  mutable std::shared_mutex graph_mu_;  // guards graph_ for readers while stop() resets it
  int64_t started_ms_ = 0;

  mutable std::mutex health_mu_;
  HealthReport health_;  // guarded by health_mu_
  std::atomic<bool> stop_monitor_{false};
  std::thread monitor_;
};

}  // namespace quizflow
