#include "egress/pg_store.h"

#include <spdlog/spdlog.h>

#include <pqxx/pqxx>

#include "core/time_util.h"
#include "egress/batch_writer.h"
#include "egress/migrations.h"
#include "egress/pg_conn.h"

namespace quizflow::egress {

PgStore::PgStore(PoolOptions options) : pool_(std::make_shared<PgPool>(std::move(options))) {}
PgStore::~PgStore() = default;

namespace {

// What a storage call threw, as the Status the Store interface returns (docs/error-policy.md).
Status status_of(const char* what, const std::exception& e) {
  const std::string msg = std::string(what) + ": " + one_line(e.what());
  if (dynamic_cast<const PoolTimeout*>(&e)) return Status::timeout(msg);
  if (dynamic_cast<const pqxx::broken_connection*>(&e)) return Status::unavailable(msg);
  return Status::internal(msg);
}

}  // namespace

template <typename F>
auto PgStore::with_conn(F&& f) {
  for (int attempt = 0;; ++attempt) {
    auto lease = pool_->checkout();
    try {
      return f(*lease.conn().c);
    } catch (const pqxx::broken_connection&) {
      lease.discard();
      if (attempt >= 1) throw;
    } catch (...) {
      lease.discard();  // unknown state: never hand it to the next user
      throw;
    }
  }
}

Status PgStore::migrate() try {
  with_conn([](pqxx::connection_base& c) {
    pqxx::work tx(c);
    tx.exec("SELECT pg_advisory_xact_lock(7240811)");  // one migrator at a time
    tx.exec(R"SQL(CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()))SQL");
    const auto r = tx.exec("SELECT coalesce(max(version), 0) FROM schema_migrations");
    const int current = r[0][0].as<int>();
    for (const auto& m : migrations()) {
      if (m.version <= current) continue;
      spdlog::info("applying migration {}: {}", m.version, m.name);
      tx.exec(m.sql);
      tx.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                     std::string(m.name));
    }
    tx.commit();
    return 0;
  });
  return Status();
} catch (const std::exception& e) {
  return status_of("migrate", e);
}

Result<std::unique_ptr<BatchWriter>> PgStore::open_writer(BatchMetrics& metrics) {
  return std::unique_ptr<BatchWriter>(std::make_unique<PgBatchWriter>(pool_, metrics));
}

Result<SaveQuizResult> PgStore::save_quiz(const QuizDef& quiz) try {
  const std::string def = encode_quiz(quiz);
  return with_conn([&](pqxx::connection_base& c) {
    pqxx::work tx(c);
    const auto ins = tx.exec_params(R"SQL(
INSERT INTO quizzes (quiz_id, title, opens_at, closes_at, definition)
VALUES ($1, $2, $3::timestamptz, $4::timestamptz, $5::jsonb)
ON CONFLICT (quiz_id) DO NOTHING RETURNING quiz_id)SQL",
                                    quiz.quiz_id, quiz.title, format_rfc3339_ms(quiz.opens_at_ms),
                                    format_rfc3339_ms(quiz.closes_at_ms), def);
    if (ins.empty()) {
      const auto cur =
          tx.exec_params("SELECT definition::text FROM quizzes WHERE quiz_id = $1", quiz.quiz_id);
      tx.commit();
      if (cur.empty()) return SaveQuizResult::conflict;
      auto stored = decode_quiz(std::string_view(cur[0][0].c_str(), cur[0][0].size()));
      return stored.quiz && *stored.quiz == quiz ? SaveQuizResult::same : SaveQuizResult::conflict;
    }
    tx.exec_params(R"SQL(
INSERT INTO questions (quiz_id, question_id, option_count, correct_option, points, time_limit_ms)
SELECT $1, (q->>'question_id')::int, (q->>'option_count')::int, (q->>'correct_option')::int,
       (q->>'points')::int, (q->>'time_limit_ms')::int
FROM jsonb_array_elements($2::jsonb -> 'questions') AS q)SQL",
                   quiz.quiz_id, def);
    tx.commit();
    return SaveQuizResult::created;
  });
} catch (const std::exception& e) {
  return status_of("save quiz", e);
}

Result<std::vector<QuizDef>> PgStore::load_quizzes() try {
  return with_conn([](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    std::vector<QuizDef> out;
    for (const auto& row : tx.exec("SELECT quiz_id, definition::text FROM quizzes")) {
      auto d = decode_quiz(std::string_view(row[1].c_str(), row[1].size()));
      if (!d.quiz) {
        spdlog::error("quiz {} has an unreadable stored definition ({}: {}); skipped",
                      row[0].as<int64_t>(), d.field, d.message);
        continue;
      }
      out.push_back(std::move(*d.quiz));
    }
    return out;
  });
} catch (const std::exception& e) {
  return status_of("load quizzes", e);
}

Result<std::vector<CountedRow>> PgStore::load_counted() try {
  return with_conn([](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    std::vector<CountedRow> out;
    for (const auto& row : tx.exec(R"SQL(
SELECT quiz_id, user_id, question_id, event_id,
       (extract(epoch FROM answered_at) * 1000)::bigint, option_id, correct, points, elapsed_ms
FROM counted_answers)SQL")) {
      CountedRow r;
      r.quiz_id = row[0].as<int64_t>();
      r.user_id = row[1].as<int64_t>();
      r.question_id = row[2].as<int32_t>();
      r.event_id = row[3].as<std::string>();
      r.answered_at_ms = row[4].as<int64_t>();
      r.option_id = row[5].as<int32_t>();
      r.correct = row[6].as<bool>();
      r.points = row[7].as<int64_t>();
      r.elapsed_ms = row[8].as<int64_t>();
      out.push_back(std::move(r));
    }
    return out;
  });
} catch (const std::exception& e) {
  return status_of("load counted answers", e);
}

Status PgStore::ping() try {
  with_conn([](pqxx::connection_base& c) {
    pqxx::nontransaction tx(c);
    tx.exec("SELECT 1");
    return 0;
  });
  return Status();
} catch (const std::exception& e) {
  return Status::unavailable(one_line(e.what()));
}

}  // namespace quizflow::egress
