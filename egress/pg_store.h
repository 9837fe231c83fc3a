// PostgreSQL implementation of the pipeline's Store and BatchWriter (libpqxx 6.4).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "pipeline/store.h"

namespace quizflow::egress {

struct PgOptions {
  std::string url;                   // DATABASE_URL; never logged unmasked
  int statement_timeout_ms = 30000;  // per statement, set on every connection
};

class PgStore final : public Store {
 public:
  explicit PgStore(PgOptions options);
  ~PgStore() override;

  void migrate() override;
  std::unique_ptr<BatchWriter> open_writer() override;
  SaveQuizResult save_quiz(const QuizDef& quiz) override;
  std::vector<QuizDef> load_quizzes() override;
  std::vector<CountedRow> load_counted() override;
  bool ping(std::string& why) override;

 private:
  // Runs f(connection&) on the admin connection, reconnecting once when it broke.
  template <typename F>
  auto with_admin(F&& f);

  struct Admin;  // the admin connection (pqxx stays out of this header)
  PgOptions options_;
  std::mutex admin_mu_;
  std::unique_ptr<Admin> admin_;  // guarded by admin_mu_
};

}  // namespace quizflow::egress
