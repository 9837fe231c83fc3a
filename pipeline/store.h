// What the pipeline needs from durable storage. egress/ implements it over PostgreSQL; tests may
// wrap the real implementation to inject faults.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/events.h"
#include "pipeline/quiz.h"

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

struct CommitOutcome {
  bool ok = false;
  std::vector<bool> inserted;  // per event: true = new in the event log, false = duplicate
  std::string error;           // when !ok: why (no secrets)
};

// Given which events were new, computes the rows to write in the same transaction.
using DeriveFn = std::function<DerivedRows(const std::vector<bool>& inserted)>;

// One connection, used by one thread at a time.
class BatchWriter {
 public:
  virtual ~BatchWriter() = default;
  // Runs one transaction for the batches of `quiz_ids` (one or more quizzes, each quiz's batch
  // whole): appends `events` (unique event_ids) to the event log, skipping event_ids already
  // stored; calls `derive` with the per-event insert flags; writes the returned counted answers
  // and standings; records `batch_key`; commits. Never throws. When the outcome is !ok nothing
  // of it is stored (a commit of unknown outcome is resolved by looking up batch_key first).
  // `derive` may run more than once (once per attempt); only the last call's rows are stored.
  virtual CommitOutcome commit(const std::vector<int64_t>& quiz_ids, const std::string& batch_key,
                               const std::vector<const AnswerEvent*>& events,
                               const DeriveFn& derive) = 0;
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

// Thread-safe: admin operations serialize on an internal connection.
class Store {
 public:
  virtual ~Store() = default;
  virtual void migrate() = 0;  // applies pending schema migrations; throws on failure
  virtual std::unique_ptr<BatchWriter> open_writer() = 0;     // throws when it cannot connect
  virtual SaveQuizResult save_quiz(const QuizDef& quiz) = 0;  // throws on storage failure
  virtual std::vector<QuizDef> load_quizzes() = 0;
  virtual std::vector<CountedRow> load_counted() = 0;  // every quiz's counted answers
  virtual bool ping(std::string& why) = 0;             // false + reason when unreachable
  virtual PoolStats pool_stats() const = 0;
};

}  // namespace quizflow
