// Fault injection by wrapping the real storage (docs/testing.md; never a fake PostgreSQL): a
// FaultyStore is an egress::PgStore whose batch writers are real egress::PgBatchWriters with
// switchable failures in front of and inside their transactions. A test keeps the FaultControl
// and arms faults on it while an Engine built on the store runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "core/mutex.h"
#include "core/status.h"
#include "core/store.h"
#include "egress/pg_pool.h"

namespace quizflow::egress {
class PgStore;
}

namespace quizflow::testing {

// The faults armed for the next commits, and what fired. Thread-safe: a test thread arms while
// database threads commit. Each commit() of a FaultyWriter takes what is armed when it starts
// (see FaultyWriter::commit); a fault armed while a commit runs applies to a later one.
class FaultControl {
 public:
  // The next `n` commits return `status` (not ok) without touching the database.
  void fail_next(int n, Status status) QF_EXCLUDES(mu_);
  // The next commit sleeps `ms` first, then runs.
  void delay_next(int ms) QF_EXCLUDES(mu_);
  // One shot: in the next commit that reaches the database, the writer's session is killed
  // (pg_terminate_backend of its pid, from another connection) just before the pipeline holding
  // COMMIT goes out, so COMMIT goes out on a dead connection: its outcome is unknown to the
  // writer (no reply, not even the transaction's id), and the transaction did NOT commit.
  void drop_connection_at_commit() QF_EXCLUDES(mu_);
  // One shot: in the next commit that reaches the database, COMMIT succeeds and the writer is
  // then told its reply was lost (pqxx::in_doubt_error, as libpqxx raises when the connection
  // drops while COMMIT's reply is on its way): the transaction IS committed.
  void lose_reply_after_commit() QF_EXCLUDES(mu_);

  // The next `n` finalizations return `unavailable` without touching the database.
  void fail_next_finalizations(int n) { fail_finalize_.store(n); }
  int64_t finalizations_failed() const { return finalize_failed_.load(); }

  // What happened so far (each counts commits, not attempts inside one commit).
  int64_t commits() const { return commits_.load(); }              // FaultyWriter::commit calls
  int64_t failures_injected() const { return failed_.load(); }     // answered by fail_next
  int64_t delays_done() const { return delayed_.load(); }          // slept by delay_next
  int64_t connections_dropped() const { return dropped_.load(); }  // backends terminated
  int64_t replies_lost() const { return lost_.load(); }            // in_doubt_error thrown
  bool delaying() const { return delaying_.load(); }  // a delayed commit is sleeping right now
  // Why an armed drop could not be done (no victim found, or it did not die in time); empty
  // when every drop worked.
  std::string drop_error() const QF_EXCLUDES(mu_);

 private:
  friend class FaultyWriter;
  // What one commit does, taken (and disarmed) when the commit starts.
  struct Plan {
    bool fail = false;
    Status status;
    int delay_ms = 0;
    bool drop = false;
    bool lose_reply = false;
  };
  Plan take() QF_EXCLUDES(mu_);
  void set_drop_error(std::string e) QF_EXCLUDES(mu_);

  mutable Mutex mu_;
  int fail_left_ QF_GUARDED_BY(mu_) = 0;
  Status fail_status_ QF_GUARDED_BY(mu_);
  int delay_ms_ QF_GUARDED_BY(mu_) = 0;
  bool drop_ QF_GUARDED_BY(mu_) = false;
  bool lose_reply_ QF_GUARDED_BY(mu_) = false;
  std::string drop_error_ QF_GUARDED_BY(mu_);

  std::atomic<int64_t> commits_{0}, failed_{0}, delayed_{0}, dropped_{0}, lost_{0};
  std::atomic<int> fail_finalize_{0};
  std::atomic<int64_t> finalize_failed_{0};
  std::atomic<bool> delaying_{false};
};

// A Store over PostgreSQL whose writers obey a FaultControl. Admin calls (migrate, save_quiz,
// load_*, ping, pool_stats) go to a real egress::PgStore unchanged; the writers share a second
// egress::PgPool on the same URL (pool_stats() reports the admin pool only). Thread-safe as
// Store requires.
class FaultyStore final : public Store {
 public:
  FaultyStore(egress::PoolOptions options, std::shared_ptr<FaultControl> control);
  ~FaultyStore() override;

  Status migrate() override;
  Result<std::map<int32_t, int64_t>> load_offsets(const std::string& group,
                                                  const std::string& topic) override;
  Result<int64_t> prune_offsets(const std::string& group, const std::string& topic) override;
  Result<int> pending_migrations() override;
  // A FaultyWriter around a real egress::PgBatchWriter on the writers' pool.
  Result<std::unique_ptr<BatchWriter>> open_writer(BatchMetrics& metrics) override;
  Result<SaveQuizResult> save_quiz(const QuizDef& quiz) override;
  Result<StoredQuizzes> load_quizzes() override;
  Result<std::optional<QuizRecord>> load_quiz(int64_t quiz_id) override;
  Result<StoredCounted> load_counted(int64_t quiz_id) override;
  Result<std::vector<std::pair<int64_t, int64_t>>> standings_versions(
      const std::vector<int64_t>& quiz_ids) override;
  Result<std::vector<std::pair<int64_t, QuizState>>> quiz_states(
      const std::vector<int64_t>& quiz_ids) override;
  Result<std::vector<StandingRow>> load_standings(int64_t quiz_id) override;
  Result<CloseResult> close_quiz(int64_t quiz_id) override;
  Result<FinalPage> final_standings(int64_t quiz_id, size_t offset, size_t limit) override;
  Result<std::optional<StandingEntry>> final_standing(int64_t quiz_id, int64_t user_id) override;
  Result<std::vector<RewardRow>> rewards(int64_t quiz_id) override;
  Result<std::vector<OutboxGroup>> outbox_unsent(int64_t older_than_ms, int64_t max_messages,
                                                 const std::vector<int64_t>& skip) override;
  Result<int64_t> outbox_sent(const std::vector<int64_t>& ids) override;
  Result<OutboxStats> outbox_stats() override;
  Result<std::vector<int64_t>> log_quizzes() override;
  Result<RebuiltQuiz> rebuild_quiz(int64_t quiz_id, const RebuildFn& compute,
                                   const QuizImport* import) override;
  Result<int64_t> count_events(const std::vector<int64_t>& quiz_ids) override;
  Result<int64_t> read_events(const std::vector<int64_t>& quiz_ids, const EventSink& sink,
                              const QuizSink& on_quiz) override;
  Status ping() override;
  PoolStats pool_stats() const override;

  FaultControl& control() { return *control_; }

 private:
  std::string url_;
  std::shared_ptr<FaultControl> control_;
  std::unique_ptr<egress::PgStore> inner_;
  std::shared_ptr<egress::PgPool> writer_pool_;
};

}  // namespace quizflow::testing
