// The per-quiz-batch transaction (spec §2 batch): one COPY into staging tables and set-based
// statements, never one statement per answer. Connections come from the shared PgPool.
#pragma once

#include <memory>
#include <string>

#include "egress/pg_pool.h"
#include "pipeline/store.h"

namespace pqxx {
class connection_base;
}

namespace quizflow::egress {

class PgBatchWriter final : public BatchWriter {
 public:
  explicit PgBatchWriter(std::shared_ptr<PgPool> pool);

  // See BatchWriter::commit. A connection lost before COMMIT is retried (up to 3 attempts) on a
  // new connection; one lost at COMMIT is resolved by looking up batch_key; a pool checkout
  // timeout fails the batch (its requests get 503).
  CommitOutcome commit(int64_t quiz_id, const std::string& batch_key,
                       const std::vector<const AnswerEvent*>& events,
                       const DeriveFn& derive) override;

 private:
  void run(pqxx::connection_base& c, int64_t quiz_id, const std::string& batch_key,
           const std::vector<const AnswerEvent*>& events, const DeriveFn& derive,
           CommitOutcome& out, bool& commit_sent);
  CommitOutcome resolve_in_doubt(const std::string& batch_key, const std::string& why,
                                 CommitOutcome out);

  std::shared_ptr<PgPool> pool_;
};

// Error text on one line (pqxx messages carry no password).
std::string one_line(const std::string& s);

}  // namespace quizflow::egress
