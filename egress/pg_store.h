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
  Result<std::unique_ptr<BatchWriter>> open_writer(BatchMetrics& metrics) override;
  Result<SaveQuizResult> save_quiz(const QuizDef& quiz) override;
  Result<std::vector<QuizDef>> load_quizzes() override;
  Result<std::vector<CountedRow>> load_counted() override;
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
