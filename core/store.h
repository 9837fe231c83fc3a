// What the engine needs from durable storage. egress/ implements it over PostgreSQL; the test
// support wraps the real implementation to inject faults (tests/support/faulty_store.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/events.h"
#include "core/metrics.h"
#include "core/notifier.h"
#include "core/quiz.h"
#include "core/standing.h"
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

// What replay's rebuild of one quiz found and wrote.
struct RebuiltQuiz {
  bool found = false;               // the quiz has a stored definition (else nothing was done)
  bool finalized = false;           // finalized: computed, not rewritten
  int64_t events = 0;               // events read (appended ones included)
  std::vector<StandingRow> before;  // the standings stored before, by user_id
  std::vector<StandingRow> after;   // the rebuilt ones, by user_id
  // With a QuizImport:
  bool created = false;   // its definition was stored by this rebuild
  bool conflict = false;  // another definition is stored: nothing was done
  int64_t appended = 0;   // events of `append` new to the log
  int64_t refused = 0;    // events of `append` new to the log that a finalized quiz did not take
};

// A quiz's stored counted answers, and the version of its standings: 0 at first, raised by
// each replay that rebuilt them (quizzes.standings_version).
struct StoredCounted {
  std::vector<CountedRow> rows;
  int64_t version = 0;
};

struct DerivedRows {
  std::vector<CountedRow> counted;
  std::vector<StandingRow> standings;
  // Notifications caused by the transaction, stored in the outbox by it (empty: none, or the
  // outbox is off). Points into storage of the caller that outlives the commit.
  std::span<const Notification> outbox = {};
};

// A finalized quiz's outcome (spec §4): every player's final rank, the rewards granted, and the
// quiz_results / reward_granted notifications.
struct FinalStanding {
  int64_t user_id = 0;
  int64_t rank = 0;
  Standing standing;
};
struct RewardRow {
  int64_t user_id = 0;
  int64_t rank = 0;
  std::string reward;
};
struct FinalRows {
  std::vector<FinalStanding> standings;  // in rank order
  std::vector<RewardRow> rewards;
  std::vector<Notification> notifications;
};
// Given the quiz's stored standings (read under the quiz row's lock), computes its outcome.
using FinalizeFn = std::function<FinalRows(std::vector<StandingRow> stored)>;

// What an import (replay --from file:) brings to a quiz's rebuild, all in its one transaction.
struct QuizImport {
  const QuizDef* define = nullptr;      // stored unless the quiz is (another one: conflict)
  std::span<const AnswerEvent> append;  // accepted events, added to the log unless stored
  // Set the state the file says: `closed` closes an open quiz; `finalized` finalizes it with
  // `finalize`'s rows computed from the rebuilt standings (no notifications).
  std::optional<QuizState> state;
  FinalizeFn finalize;
};

// A quiz of the log as read with its events (export): its record (none: no stored
// definition), the rewards granted and how many events follow, all in the events' snapshot.
struct LoggedQuiz {
  int64_t quiz_id = 0;
  std::optional<QuizRecord> record;
  std::vector<RewardRow> rewards;
  int64_t events = 0;
};

// What a finalization transaction did.
struct Finalized {
  bool already = false;  // the quiz was finalized before (by another engine or an earlier run)
  int64_t players = 0;
  int64_t rewards = 0;              // rewards this transaction granted
  std::vector<OutboxGroup> outbox;  // its notifications as stored (ids set when the outbox is on)
};

// A Kafka consumer group's progress in one partition: every message below `next` is settled
// (stored, or refused and sent to the dead-letter topic).
struct PartitionOffset {
  std::string group_id;
  std::string topic;
  int32_t partition = 0;
  int64_t next = 0;
};

// One batch transaction: the batches of one or more quizzes (each quiz's batch whole).
struct BatchTxn {
  std::vector<int64_t> quiz_ids;
  std::string batch_key;                       // unique; recorded in the transaction
  std::span<const AnswerEvent* const> events;  // distinct event_ids (stages::dedupe)
  // Per quiz: the version of its standings the engine holds (StoredCounted::version); the
  // transaction fails with `stale`, storing nothing, when a replay rebuilt them since. Empty:
  // not checked (the quizzes are still held against a replay).
  std::vector<int64_t> versions = {};
  // The consumer's settled offsets, stored with the batch (empty: not consuming Kafka).
  std::vector<PartitionOffset> offsets = {};
};

// An event the database refused: its index among the transaction's events, and the reason
// (SQLSTATE and the server's primary message, without the failing row's contents).
struct RefusedEvent {
  size_t index = 0;
  std::string reason;
};

// What a committed transaction did.
struct Committed {
  std::vector<bool> inserted;  // per event: true = new in the event log, false = stored before
  int64_t outbox_id = 0;       // the outbox row of DerivedRows::outbox (0: none)
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

  // After commit() failed `invalid` (the database refused some row's data: a data exception or
  // a constraint, SQLSTATE class 22 or 23): the events the event log refuses on their own,
  // found by bisection inside one transaction that is rolled back (nothing is stored). Empty:
  // no event is refused alone (the data error is elsewhere). Never throws.
  virtual Result<std::vector<RefusedEvent>> refused_events(
      std::span<const AnswerEvent* const> events) = 0;

  // Finalizes a quiz in one transaction: locks the quiz row (so that two engines, or a close
  // racing the timer, finalize once), reads its stored standings, calls `fn`, and stores the
  // final standings, the rewards (unique per (quiz, user): granted at most once whatever
  // happens), the notifications (in the outbox when `outbox`; else they are only returned) and
  // the state `finalized`. A quiz already finalized is left alone (`already`). Idempotent, so a
  // lost connection at any point is simply retried. Never throws.
  virtual Result<Finalized> finalize(int64_t quiz_id, const FinalizeFn& fn, bool outbox) = 0;
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
enum class CloseResult { closed, already_closed, finalized, unknown };

// What start-up loads: the live quizzes with their state, and only the ids of finalized ones.
struct StoredQuizzes {
  std::vector<QuizRecord> live;
  std::vector<int64_t> finalized;
};

// Outbox figures (spec §6 `outbox`).
struct OutboxStats {
  int64_t unsent = 0;            // messages in rows not yet deleted
  int64_t oldest_unsent_ms = 0;  // age of the oldest row; 0 when empty
};

// A page of a finalized quiz's frozen standings.
struct FinalPage {
  int64_t total = 0;
  std::vector<StandingEntry> entries;
};

// Thread-safe: admin operations serialize on an internal connection. Every call returns its
// failure as a Status (see core/status.h); none throws.
class Store {
 public:
  virtual ~Store() = default;
  virtual Status migrate() = 0;                  // applies pending schema migrations
  virtual Result<int> pending_migrations() = 0;  // how many migrate() would apply; changes nothing
  // A writer that counts, as they happen and whatever the outcome, its retries, in-doubt
  // resolutions and state mismatches in `metrics` (which must outlive it).
  virtual Result<std::unique_ptr<BatchWriter>> open_writer(BatchMetrics& metrics) = 0;
  virtual Result<SaveQuizResult> save_quiz(const QuizDef& quiz) = 0;
  virtual Result<StoredQuizzes> load_quizzes() = 0;
  virtual Result<std::optional<QuizRecord>> load_quiz(int64_t quiz_id) = 0;
  // One quiz's counted answers (its standings are rebuilt from them on first use) and the
  // version of its standings, in one snapshot.
  virtual Result<StoredCounted> load_counted(int64_t quiz_id) = 0;
  // The stored version of the standings (StoredCounted::version) of those of `quiz_ids` that a
  // replay has rebuilt (version above 0), as (quiz_id, version).
  virtual Result<std::vector<std::pair<int64_t, int64_t>>> standings_versions(
      const std::vector<int64_t>& quiz_ids) = 0;
  // The stored state of those of `quiz_ids` that are not open (closed or finalized, by another
  // instance or an import).
  virtual Result<std::vector<std::pair<int64_t, QuizState>>> quiz_states(
      const std::vector<int64_t>& quiz_ids) = 0;
  // One quiz's stored standings (the live table; by user_id).
  virtual Result<std::vector<StandingRow>> load_standings(int64_t quiz_id) = 0;
  // Records a close request (state `closed`) unless the quiz is finalized.
  virtual Result<CloseResult> close_quiz(int64_t quiz_id) = 0;
  // A finalized quiz's frozen standings and granted rewards (rank order).
  virtual Result<FinalPage> final_standings(int64_t quiz_id, size_t offset, size_t limit) = 0;
  virtual Result<std::optional<StandingEntry>> final_standing(int64_t quiz_id, int64_t user_id) = 0;
  virtual Result<std::vector<RewardRow>> rewards(int64_t quiz_id) = 0;

  // The outbox. Rows older than `older_than_ms`, oldest first, skipping `skip` ids, holding at
  // most `max_messages` messages in all (at least one row when any is unsent); marks rows sent
  // by deleting them (returns the messages they held).
  virtual Result<std::vector<OutboxGroup>> outbox_unsent(int64_t older_than_ms,
                                                         int64_t max_messages,
                                                         const std::vector<int64_t>& skip) = 0;
  virtual Result<int64_t> outbox_sent(const std::vector<int64_t>& ids) = 0;
  virtual Result<OutboxStats> outbox_stats() = 0;

  // The event log — of `quiz_ids`, or of every quiz in it when empty — handed to `sink` quiz by
  // quiz (ascending), each quiz's events by event_id, read by binary COPY in one snapshot. Returns
  // how many events it read. An exception thrown by `sink` ends the read and is returned as
  // `internal`.
  using EventSink = std::function<void(const AnswerEvent&)>;
  // The quizzes that have events in the log, ascending.
  virtual Result<std::vector<int64_t>> log_quizzes() = 0;
  // Rebuilds one quiz's counted answers and standings (replay): in one transaction that holds
  // the quiz against batch transactions (an exclusive advisory lock: those in flight finish
  // first, new ones wait), reads its definition and every event, calls `compute`, replaces the
  // quiz's counted answers and standings with its rows when they differ, and raises
  // standings_version (engines reload the quiz before their next batch of it). A finalized quiz
  // is computed but not rewritten (its rewards stay as granted). Nothing is changed unless it
  // commits whole. With `import` (may be null), in the same transaction: the definition is
  // stored first when missing, the events appended before the log is read (skipping stored
  // event_ids; a finalized quiz takes none: `refused`), and the state set after the rebuild.
  using RebuildFn =
      std::function<DerivedRows(const QuizDef& def, const std::vector<AnswerEvent>& events)>;
  virtual Result<RebuiltQuiz> rebuild_quiz(int64_t quiz_id, const RebuildFn& compute,
                                           const QuizImport* import) = 0;
  // How many events the log holds for `quiz_ids` (every quiz when empty).
  virtual Result<int64_t> count_events(const std::vector<int64_t>& quiz_ids) = 0;
  // `on_quiz` (may be empty) is called before each quiz's events, in the same snapshot.
  using QuizSink = std::function<void(const LoggedQuiz&)>;
  virtual Result<int64_t> read_events(const std::vector<int64_t>& quiz_ids, const EventSink& sink,
                                      const QuizSink& on_quiz) = 0;

  // The settled offset per partition of `topic` that batch transactions stored for `group`
  // (the highest of each); partitions never stored are absent.
  virtual Result<std::map<int32_t, int64_t>> load_offsets(const std::string& group,
                                                          const std::string& topic) = 0;
  // Deletes stored offsets below the highest of their partition (they only grow). Returns how
  // many rows went.
  virtual Result<int64_t> prune_offsets(const std::string& group, const std::string& topic) = 0;

  virtual Status ping() = 0;  // ok when the database answers
  virtual PoolStats pool_stats() const = 0;
};

}  // namespace quizflow
