#include "support/faulty_store.h"

#include <chrono>
#include <cstring>
#include <pqxx/pqxx>
#include <stdexcept>
#include <thread>
#include <utility>

#include "egress/batch_writer.h"
#include "egress/pg_store.h"

namespace quizflow::testing {

void FaultControl::fail_next(int n, Status status) {
  if (status.ok()) throw std::invalid_argument("fail_next needs a status that is not ok");
  MutexLock lock(mu_);
  fail_left_ = n;
  fail_status_ = std::move(status);
}

void FaultControl::delay_next(int ms) {
  MutexLock lock(mu_);
  delay_ms_ = ms;
}

void FaultControl::drop_connection_at_commit() {
  MutexLock lock(mu_);
  drop_ = true;
}

void FaultControl::lose_reply_after_commit() {
  MutexLock lock(mu_);
  lose_reply_ = true;
}

std::string FaultControl::drop_error() const {
  MutexLock lock(mu_);
  return drop_error_;
}

void FaultControl::set_drop_error(std::string e) {
  MutexLock lock(mu_);
  if (drop_error_.empty()) drop_error_ = std::move(e);
}

FaultControl::Plan FaultControl::take() {
  Plan p;
  MutexLock lock(mu_);
  if (fail_left_ > 0) {
    --fail_left_;
    p.fail = true;
    p.status = fail_status_;
  }
  p.delay_ms = std::exchange(delay_ms_, 0);
  if (!p.fail) {  // the in-transaction faults wait for a commit that reaches the database
    p.drop = std::exchange(drop_, false);
    p.lose_reply = std::exchange(lose_reply_, false);
  }
  return p;
}

// One database thread's writer: a real PgBatchWriter, with the faults of the plan taken when
// each commit starts. Used by one thread at a time (BatchWriter's contract), so plan_ needs no
// lock.
class FaultyWriter final : public BatchWriter {
 public:
  FaultyWriter(std::unique_ptr<egress::PgBatchWriter> inner, std::shared_ptr<FaultControl> control,
               std::string url)
      : inner_(std::move(inner)), control_(std::move(control)), url_(std::move(url)) {
    inner_->set_step_timer([this](const char* step, double) { on_step(step); });
  }

  Result<std::vector<RefusedEvent>> refused_events(
      std::span<const AnswerEvent* const> events) override {
    return inner_->refused_events(events);
  }

  Result<Committed> commit(const BatchTxn& txn, const DeriveFn& derive) override {
    FaultControl& c = *control_;
    c.commits_.fetch_add(1);
    plan_ = c.take();
    if (plan_.delay_ms > 0) {
      c.delaying_.store(true);
      std::this_thread::sleep_for(std::chrono::milliseconds(plan_.delay_ms));
      c.delaying_.store(false);
      c.delayed_.fetch_add(1);
    }
    if (plan_.fail) {
      c.failed_.fetch_add(1);
      return plan_.status;
    }
    return inner_->commit(txn, derive);
  }

  // Finalizations run untouched unless fail_next_finalizations() armed a failure.
  Result<Finalized> finalize(int64_t quiz_id, const FinalizeFn& fn, bool outbox) override {
    FaultControl& c = *control_;
    for (int left = c.fail_finalize_.load(); left > 0; left = c.fail_finalize_.load()) {
      if (c.fail_finalize_.compare_exchange_weak(left, left - 1)) {
        c.finalize_failed_.fetch_add(1);
        return Status::unavailable("injected: finalization failed");
      }
    }
    return inner_->finalize(quiz_id, fn, outbox);
  }

 private:
  // Called by the real writer after each step of an attempt; what it throws fails the step.
  void on_step(const char* step) {
    if (plan_.drop && std::strcmp(step, "send") == 0) {
      plan_.drop = false;  // one shot: the retry on a new connection runs untouched
      kill_writer_session(inner_->backend_pid());
    }
    if (plan_.lose_reply && std::strcmp(step, "committed") == 0) {
      plan_.lose_reply = false;
      control_->lost_.fetch_add(1);
      throw pqxx::in_doubt_error("injected: COMMIT reply lost");
    }
  }

  // Terminates the writer's session (`pid`, idle just before the pipeline holding COMMIT goes
  // out) and waits until it is gone, so that COMMIT certainly meets a dead connection. Failures
  // are recorded, not thrown: the commit then runs unharmed and the test sees
  // connections_dropped() unchanged and drop_error() set.
  void kill_writer_session(int pid) {
    try {
      pqxx::connection killer(url_);
      pqxx::nontransaction tx(killer);
      const pqxx::result killed =
          tx.exec_params("SELECT pg_terminate_backend($1) WHERE $1 <> pg_backend_pid()", pid);
      if (killed.empty() || !killed[0][0].as<bool>()) {
        control_->set_drop_error("could not terminate the writer's session (pid " +
                                 std::to_string(pid) + ")");
        return;
      }
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (tx.exec_params("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid).size() > 0) {
        if (std::chrono::steady_clock::now() >= deadline) {
          control_->set_drop_error("backend " + std::to_string(pid) + " still alive after 10 s");
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      control_->dropped_.fetch_add(1);
    } catch (const std::exception& e) {
      control_->set_drop_error(std::string("terminating the writer's backend failed: ") + e.what());
    }
  }

  std::unique_ptr<egress::PgBatchWriter> inner_;
  std::shared_ptr<FaultControl> control_;
  std::string url_;
  FaultControl::Plan plan_;
};

FaultyStore::FaultyStore(egress::PoolOptions options, std::shared_ptr<FaultControl> control)
    : url_(options.url),
      control_(std::move(control)),
      inner_(std::make_unique<egress::PgStore>(options)),
      writer_pool_(std::make_shared<egress::PgPool>(std::move(options))) {}

FaultyStore::~FaultyStore() = default;

Status FaultyStore::migrate() { return inner_->migrate(); }

Result<std::unique_ptr<BatchWriter>> FaultyStore::open_writer(BatchMetrics& metrics) {
  return std::unique_ptr<BatchWriter>(std::make_unique<FaultyWriter>(
      std::make_unique<egress::PgBatchWriter>(writer_pool_, metrics), control_, url_));
}

Result<int> FaultyStore::pending_migrations() { return inner_->pending_migrations(); }

Result<std::map<int32_t, int64_t>> FaultyStore::load_offsets(const std::string& group,
                                                             const std::string& topic) {
  return inner_->load_offsets(group, topic);
}

Result<int64_t> FaultyStore::prune_offsets(const std::string& group, const std::string& topic) {
  return inner_->prune_offsets(group, topic);
}

Result<SaveQuizResult> FaultyStore::save_quiz(const QuizDef& quiz) {
  return inner_->save_quiz(quiz);
}

Result<StoredQuizzes> FaultyStore::load_quizzes() { return inner_->load_quizzes(); }

Result<std::optional<QuizRecord>> FaultyStore::load_quiz(int64_t quiz_id) {
  return inner_->load_quiz(quiz_id);
}

Result<StoredCounted> FaultyStore::load_counted(int64_t quiz_id) {
  return inner_->load_counted(quiz_id);
}

Result<std::vector<std::pair<int64_t, int64_t>>> FaultyStore::standings_versions(
    const std::vector<int64_t>& quiz_ids) {
  return inner_->standings_versions(quiz_ids);
}

Result<std::vector<std::pair<int64_t, QuizState>>> FaultyStore::quiz_states(
    const std::vector<int64_t>& quiz_ids) {
  return inner_->quiz_states(quiz_ids);
}

Result<std::vector<StandingRow>> FaultyStore::load_standings(int64_t quiz_id) {
  return inner_->load_standings(quiz_id);
}

Result<CloseResult> FaultyStore::close_quiz(int64_t quiz_id) { return inner_->close_quiz(quiz_id); }

Result<FinalPage> FaultyStore::final_standings(int64_t quiz_id, size_t offset, size_t limit) {
  return inner_->final_standings(quiz_id, offset, limit);
}

Result<std::optional<StandingEntry>> FaultyStore::final_standing(int64_t quiz_id, int64_t user_id) {
  return inner_->final_standing(quiz_id, user_id);
}

Result<std::vector<RewardRow>> FaultyStore::rewards(int64_t quiz_id) {
  return inner_->rewards(quiz_id);
}

Result<std::vector<OutboxGroup>> FaultyStore::outbox_unsent(int64_t older_than_ms,
                                                            int64_t max_messages,
                                                            const std::vector<int64_t>& skip) {
  return inner_->outbox_unsent(older_than_ms, max_messages, skip);
}

Result<int64_t> FaultyStore::outbox_sent(const std::vector<int64_t>& ids) {
  return inner_->outbox_sent(ids);
}

Result<std::vector<int64_t>> FaultyStore::log_quizzes() { return inner_->log_quizzes(); }

Result<RebuiltQuiz> FaultyStore::rebuild_quiz(int64_t quiz_id, const RebuildFn& compute,
                                              const QuizImport* import) {
  return inner_->rebuild_quiz(quiz_id, compute, import);
}

Result<int64_t> FaultyStore::count_events(const std::vector<int64_t>& quiz_ids) {
  return inner_->count_events(quiz_ids);
}

Result<int64_t> FaultyStore::read_events(const std::vector<int64_t>& quiz_ids,
                                         const EventSink& sink, const QuizSink& on_quiz) {
  return inner_->read_events(quiz_ids, sink, on_quiz);
}

Result<OutboxStats> FaultyStore::outbox_stats() { return inner_->outbox_stats(); }

Status FaultyStore::ping() { return inner_->ping(); }

PoolStats FaultyStore::pool_stats() const { return inner_->pool_stats(); }

}  // namespace quizflow::testing
