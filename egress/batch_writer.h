// The batch transaction (spec §2 batch): binary COPYs and set-based statements, never one
// statement per answer; one or more quizzes' batches per transaction. Connections come from the
// shared PgPool.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "egress/pg_pool.h"
#include "pipeline/store.h"

namespace quizflow::egress {

class PgBatchWriter final : public BatchWriter {
 public:
  explicit PgBatchWriter(std::shared_ptr<PgPool> pool);

  // See BatchWriter::commit. A connection lost before COMMIT is retried (up to 3 attempts) on a
  // new connection; one lost at COMMIT is resolved by looking up batch_key; a pool checkout
  // timeout fails the batch (its requests get 503). New counted answers and standings are
  // copied straight into their tables (the engine knows they are new); should the stored rows
  // differ from what the engine expected, the transaction is redone with upserts, and a warning
  // is logged.
  CommitOutcome commit(const std::vector<int64_t>& quiz_ids, const std::string& batch_key,
                       const std::vector<const AnswerEvent*>& events,
                       const DeriveFn& derive) override;

  // Transactions redone with upserts since start (see commit).
  int64_t upsert_fallbacks() const { return upsert_fallbacks_; }

  // Optional: called with each step of the transaction and its duration in seconds (the DB-path
  // benchmark's profile of where the time goes).
  using StepTimer = std::function<void(const char* step, double secs)>;
  void set_step_timer(StepTimer timer) { step_timer_ = std::move(timer); }

 private:
  struct Attempt;
  void run(PgPool::Conn& conn, const Attempt& a, CommitOutcome& out, bool& commit_sent);
  CommitOutcome resolve_in_doubt(const std::string& batch_key, const std::string& why,
                                 CommitOutcome out);

  template <typename F>
  void step(const char* name, F&& f);

  std::shared_ptr<PgPool> pool_;
  int64_t upsert_fallbacks_ = 0;
  StepTimer step_timer_;
};

// Error text on one line (pqxx messages carry no password).
std::string one_line(const std::string& s);

}  // namespace quizflow::egress
