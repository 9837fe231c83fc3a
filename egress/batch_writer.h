// The batch transaction (spec §2 batch): binary COPYs and set-based statements, never one
// statement per answer; one or more quizzes' batches per transaction. Connections come from the
// shared PgPool.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "core/store.h"
#include "egress/pg_pool.h"

namespace quizflow::egress {

class PgBatchWriter final : public BatchWriter {
 public:
  // Counts its retries, in-doubt resolutions and upsert fallbacks in `metrics`.
  PgBatchWriter(std::shared_ptr<PgPool> pool, BatchMetrics& metrics);

  // See BatchWriter::commit. A connection lost before COMMIT is retried on a new connection (3
  // attempts, backoff 100 ms, 200 ms); one lost at COMMIT is resolved by asking the database
  // what became of the transaction (txid_status; with backoff, about 9 s at most) and retried
  // only when the COMMIT did not happen; a pool
  // checkout timeout fails the batch (`timeout`: its requests get 503). New counted answers and
  // standings are copied straight into their tables (the engine knows they are new); should the
  // stored rows differ from what the engine expected, the transaction is redone with upserts.
  // Retries, fallbacks and in-doubt resolutions are counted in the metrics as they happen.
  Result<Committed> commit(const BatchTxn& txn, const DeriveFn& derive) override;

  // See BatchWriter::finalize: up to 3 attempts (backoff 100 ms, 200 ms) on a lost connection
  // or a pool timeout; a failed statement is not retried (`internal`).
  Result<Finalized> finalize(int64_t quiz_id, const FinalizeFn& fn, bool outbox) override;

  // Optional: called after each step of the transaction ("begin", "copy_events", …,
  // "insert_batch", "commit") with its duration in seconds: the DB-path benchmark's profile of
  // where the time goes. A hook that throws fails the step as the exception would (the fault-
  // injecting writer of the tests uses that).
  using StepTimer = std::function<void(const char* step, double secs)>;
  void set_step_timer(StepTimer timer) { step_timer_ = std::move(timer); }

 private:
  struct Attempt;
  // What an attempt knows about its transaction once COMMIT may have been sent.
  struct InFlight {
    bool commit_sent = false;
    int64_t txid = 0;     // txid_current() of the transaction (0: not known yet)
    int backend_pid = 0;  // the server process that ran it
  };
  void run(PgPool::Conn& conn, const Attempt& a, Committed& out, InFlight& f);
  // True when the transaction committed, false when it did not; in_doubt when the database
  // could not be asked.
  Result<bool> resolve_in_doubt(const std::string& batch_key, const InFlight& f,
                                const std::string& why);

  template <typename F>
  void step(const char* name, F&& f);

  std::shared_ptr<PgPool> pool_;
  BatchMetrics& metrics_;
  StepTimer step_timer_;
};

// Error text on one line (pqxx messages carry no password).
std::string one_line(const std::string& s);

}  // namespace quizflow::egress
