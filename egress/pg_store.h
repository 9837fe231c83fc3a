// PostgreSQL implementation of the engine's Store and BatchWriter (libpqxx 6.4).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "core/store.h"
#include "egress/pg_pool.h"

namespace quizflow::egress {

struct PgOptions {
  std::string url;                   // DATABASE_URL; never logged unmasked
  int statement_timeout_ms = 30000;  // per statement, set on every connection
};

class PgStore final : public Store {
 public:
  // Connections come from one pool shared by the batch writers and the admin calls.
  explicit PgStore(PoolOptions options);
  ~PgStore() override;

  Status migrate() override;
  Result<std::map<int32_t, int64_t>> load_offsets(const std::string& group,
                                                  const std::string& topic) override;
  Result<int64_t> prune_offsets(const std::string& group, const std::string& topic) override;
  Result<int> pending_migrations() override;
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
  PoolStats pool_stats() const override { return pool_->stats(); }

 private:
  // Runs f(pqxx::connection_base&) on a pooled connection; retried once on a fresh connection when
  // the first one turned out broken.
  template <typename F>
  auto with_conn(F&& f);

  std::shared_ptr<PgPool> pool_;
};

}  // namespace quizflow::egress
