// The batch transaction (spec §2 batch): set-based statements taking the whole batch as array
// parameters, never one statement per answer, sent as one libpq pipeline (one round trip); one
// or more quizzes' batches per transaction. Connections come from the shared PgPool.
#pragma once

#include <functional>
#include <memory>
#include <pqxx/transaction_base>
#include <span>
#include <string>

#include "core/store.h"
#include "egress/pg_pool.h"

extern "C" {
struct pg_conn;
}

namespace quizflow::egress {

class PgBatchWriter final : public BatchWriter {
 public:
  // Counts its retries, in-doubt resolutions and state mismatches in `metrics`.
  PgBatchWriter(std::shared_ptr<PgPool> pool, BatchMetrics& metrics);

  // See BatchWriter::commit. A connection lost before COMMIT is retried on a new connection (3
  // attempts, backoff 100 ms, 200 ms); one lost at COMMIT is resolved by asking the database
  // what became of the transaction (txid_status, or the batch key once the old session is
  // gone; with backoff, about 9 s at most) and retried only when the COMMIT did not happen; a
  // pool checkout timeout fails the batch (`timeout`: its requests get 503). The events go into
  // the log as if all were new; when one is stored already the transaction is redone learning
  // which are new (one round trip more). Counted answers and standings are upserted as absolute
  // values; when the count of new rows differs from what the engine expected (stored rows
  // differ from memory) it is counted in `state_mismatches` and logged.
  Result<Committed> commit(const BatchTxn& txn, const DeriveFn& derive) override;
  // See BatchWriter::refused_events: at most 512 probes (a round trip each).
  Result<std::vector<RefusedEvent>> refused_events(
      std::span<const AnswerEvent* const> events) override;

  // See BatchWriter::finalize: up to 3 attempts (backoff 100 ms, 200 ms) on a lost connection
  // or a pool timeout; a failed statement is not retried (`internal`).
  Result<Finalized> finalize(int64_t quiz_id, const FinalizeFn& fn, bool outbox) override;

  // Every step of a transaction is timed into the metrics' `steps` (core/metrics.h:
  // kWriterSteps, in the order they run: "encode_events", "insert_new_events" (stored events
  // only), "copy_events" / "copy_counted" / "copy_standings" (many new rows only), "derive",
  // "split_rows", "encode_rows", "round_trip" (the pipeline: the server runs the statements and
  // commits)). Two more points are hooks without work: "send" (just before the pipeline holding
  // COMMIT goes out) and "committed" (COMMIT's reply is in).
  // Optional: `timer` is called after each of them with its duration in seconds (the DB-path
  // benchmark's profile). A hook that throws fails the step as the exception would (the fault-
  // injecting writer of the tests uses that).
  using StepTimer = std::function<void(const char* step, double secs)>;
  void set_step_timer(StepTimer timer) { step_timer_ = std::move(timer); }
  // The server process serving the attempt in progress (0 between attempts): what a hook that
  // injects faults terminates.
  int backend_pid() const { return backend_pid_; }

 private:
  struct Attempt;
  // What an attempt knows about its transaction once COMMIT may have been sent.
  struct InFlight {
    bool commit_sent = false;
    int64_t txid = 0;     // txid_current() of the transaction (0: not known yet)
    int backend_pid = 0;  // the server process that ran it
  };
  void run(pg_conn* raw, const Attempt& a, Committed& out, InFlight& f);
  // True when the transaction committed, false when it did not; in_doubt when the database
  // could not be asked.
  Result<bool> resolve_in_doubt(const std::string& batch_key, const InFlight& f,
                                const std::string& why);

  template <typename F>
  void step(const char* name, F&& f);

  std::shared_ptr<PgPool> pool_;
  BatchMetrics& metrics_;
  StepTimer step_timer_;
  int backend_pid_ = 0;  // the server process of the attempt in progress
};

// Binary COPY of rows straight into counted_answers / standings, sorted by their key, inside
// the caller's transaction on `raw` (what replay's rebuild writes; the batch writer's encoders).
void copy_counted(pg_conn* raw, const std::vector<CountedRow>& rows);
// The same for events, into the table `copy_sql` names (its columns in kCopyEvents' order).
void copy_events(pg_conn* raw, const char* copy_sql, std::span<const AnswerEvent> rows);
// A finalization's rows (final standings, rewards: unique per (quiz, user)) by binary COPY, and
// the quiz's state `finalized`, inside the caller's transaction (the writer's finalize, import).
void copy_final(pg_conn* raw, int64_t quiz_id, const FinalRows& rows);
void mark_finalized(pqxx::transaction_base& tx, int64_t quiz_id, const FinalRows& rows);
void copy_standings(pg_conn* raw, const std::vector<StandingRow>& rows);

// Error text on one line (pqxx messages carry no password).
std::string one_line(const std::string& s);

}  // namespace quizflow::egress
