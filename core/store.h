// What the engine needs from durable storage. egress/ implements it over PostgreSQL; the test
// support wraps the real implementation to inject faults (tests/support/faulty_store.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/events.h"
#include "core/metrics.h"
#include "core/quiz.h"
#include "core/status.h"

namespace quizflow {

// The answer that counts for one (quiz, user, question) (spec §4).
struct CountedRow {
  int64_t quiz_id = 0;
  int64_t user_id = 0;
  int32_t question_id = 0;
  std::string event_id;
  int64_t answered_at_ms = 0;
  int32_t option_id = 0;
  bool correct = false;
  int64_t points = 0;
  int64_t elapsed_ms = 0;
  bool replaces = false;  // the engine holds a stored counted answer for this key
};

// One player's standing, written as absolute values.
struct StandingRow {
  int64_t quiz_id = 0;
  int64_t user_id = 0;
  int64_t score = 0;
  int64_t correct = 0;
  int64_t time_ms = 0;
  bool exists = false;  // the engine holds a stored standing for this player
};

struct DerivedRows {
  std::vector<CountedRow> counted;
  std::vector<StandingRow> standings;
};

// One batch transaction: the batches of one or more quizzes (each quiz's batch whole).
struct BatchTxn {
  std::vector<int64_t> quiz_ids;
  std::string batch_key;                       // unique; recorded in the transaction
  std::span<const AnswerEvent* const> events;  // distinct event_ids (stages::dedupe)
};

// What a committed transaction did.
struct Committed {
  std::vector<bool> inserted;  // per event: true = new in the event log, false = stored before
};

// Given which events were new, computes the rows to write in the same transaction.
using DeriveFn = std::function<DerivedRows(const std::vector<bool>& inserted)>;

// One connection, used by one thread at a time.
class BatchWriter {
 public:
  virtual ~BatchWriter() = default;
  // Runs one transaction: appends `txn.events` to the event log, skipping event_ids already
  // stored; calls `derive` with the per-event insert flags; writes the returned counted answers
  // and standings; records `txn.batch_key`; commits. Never throws.
  // Ok: everything is stored, exactly once. `unavailable`, `timeout` (retry later) or `internal`
  // (a statement failed): nothing of it is stored. `in_doubt`: COMMIT's reply was lost and the
  // database could not be asked what became of it — it may or may not be stored (the engine
  // then stops committing until a restart reloads its state). A COMMIT of unknown outcome is
  // resolved by asking the database before anything is retried, so a batch is never applied
  // twice and never dropped.
  // `derive` may run more than once (once per attempt); only the last call's rows are stored.
  virtual Result<Committed> commit(const BatchTxn& txn, const DeriveFn& derive) = 0;
};

// Connection pool figures (spec §6 database_pool).
struct PoolStats {
  int64_t pool_size = 0, max_overflow = 0;
  int64_t checked_out = 0;  // in use now
  int64_t overflow = 0;     // open beyond pool_size
  int64_t total = 0;        // open connections, idle or in use
  int64_t idle = 0;
  int64_t wait_count = 0;                         // checkouts that had to wait
  int64_t timeouts = 0;                           // checkouts that gave up (the request got 503)
  int64_t opened = 0, closed = 0, discarded = 0;  // discarded: broken connections dropped
  double wait_ms_p99 = 0;
};

enum class SaveQuizResult { created, same, conflict };

// Thread-safe: admin operations serialize on an internal connection. Every call returns its
// failure as a Status (see core/status.h); none throws.
class Store {
 public:
  virtual ~Store() = default;
  virtual Status migrate() = 0;  // applies pending schema migrations
  // A writer that counts, as they happen and whatever the outcome, its retries, in-doubt
  // resolutions and upsert fallbacks in `metrics` (which must outlive it).
  virtual Result<std::unique_ptr<BatchWriter>> open_writer(BatchMetrics& metrics) = 0;
  virtual Result<SaveQuizResult> save_quiz(const QuizDef& quiz) = 0;
  virtual Result<std::vector<QuizDef>> load_quizzes() = 0;
  virtual Result<std::vector<CountedRow>> load_counted() = 0;  // every quiz's counted answers
  virtual Status ping() = 0;                                   // ok when the database answers
  virtual PoolStats pool_stats() const = 0;
};

}  // namespace quizflow
