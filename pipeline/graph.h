// The oneTBB flow graph of the answer path (spec §2), wired in graph.cpp and nowhere else:
//
//   put() -> ingest -> validate -> batch -> commit (async, CommitPool) -> score -> notify
//                                    ^                                      |        (OutboxRelay)
//                                    +------- transaction done -------------+
//
// The batch node also runs each quiz's finalization (spec §4): when it is due, the quiz's buffer
// is flushed, and once its last batch committed its finalization transaction goes the same way.
//
// Chunks (a request's items, a quiz batch) move between nodes, never single events.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/consumer.h"
#include "core/metrics.h"
#include "core/notifier.h"
#include "core/quiz.h"
#include "core/request.h"
#include "pipeline/commit_pool.h"
#include "pipeline/outbox_relay.h"
#include "stages/score.h"

namespace quizflow {

struct GraphDeps {
  const Config& config;
  Catalog& catalog;
  stages::StandingsBook& standings;
  Store& store;  // loads a quiz's standings on first use (on a database thread)
  CommitPool& commits;
  OutboxRelay& relay;  // where notify hands notifications
  PipelineMetrics& metrics;
  const ConsumerHooks* consumer = nullptr;  // a Kafka source's offsets, stored with each batch
};

class Graph {
 public:
  explicit Graph(GraphDeps deps);
  ~Graph();  // drains
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Hands a request to ingest. Thread-safe. The request's completion fires exactly once.
  void put(RequestPtr r);

  // Finalizes `quiz_id` at `due_ms` (wall clock; 0 or past: as soon as its buffered batches
  // committed), or earlier if it was due earlier. Thread-safe.
  void schedule_finalization(int64_t quiz_id, int64_t due_ms);

  // Flushes every buffered batch, waits until all of them committed and the graph is idle.
  // Call after the last put(). Idempotent.
  void drain();

  // Events buffered in the batch stage or committing.
  int64_t pending_events() const;

  // The quizzes with the most buffered events (quiz_id, events), largest first; refreshed by
  // the batch stage ten times a second.
  std::vector<std::pair<int64_t, int64_t>> largest_pending() const;

 private:
  struct Arena;
  struct Impl;
  std::unique_ptr<Arena> arena_;  // where the graph's tasks run; outlives impl_
  std::unique_ptr<Impl> impl_;
};

}  // namespace quizflow
