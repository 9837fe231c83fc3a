#include "egress/pg_store.h"

#include <spdlog/spdlog.h>

#include <pqxx/pqxx>
#include <thread>
#include <unordered_map>

#include "egress/migrations.h"
#include "pipeline/time_util.h"

namespace quizflow::egress {
namespace {

// Error text safe to log: pqxx messages carry no password, but keep them to one line.
std::string one_line(const std::string& s) {
  std::string r = s;
  for (auto& c : r)
    if (c == '\n' || c == '\r') c = ' ';
  while (!r.empty() && r.back() == ' ') r.pop_back();
  return r;
}

std::unique_ptr<pqxx::connection> connect(const PgOptions& options);

class PgBatchWriter final : public BatchWriter {
 public:
  explicit PgBatchWriter(PgOptions options) : options_(std::move(options)) { reconnect(); }

  CommitOutcome commit(int64_t quiz_id, const std::string& batch_key,
                       const std::vector<const AnswerEvent*>& events,
                       const DeriveFn& derive) override {
    CommitOutcome out;
    for (int attempt = 1; attempt <= 3; ++attempt) {
      bool commit_sent = false;
      try {
        if (!conn_ || !conn_->is_open()) reconnect();
        run(*conn_, quiz_id, batch_key, events, derive, out, commit_sent);
        out.ok = true;
        return out;
      } catch (const pqxx::in_doubt_error& e) {
        return resolve_in_doubt(batch_key, e.what(), out);
      } catch (const pqxx::broken_connection& e) {
        conn_.reset();
        if (commit_sent) return resolve_in_doubt(batch_key, e.what(), out);
        out.error = "connection lost: " + one_line(e.what());
        spdlog::warn("batch {}: {} (attempt {})", batch_key, out.error, attempt);
      } catch (const std::exception& e) {
        out.error = one_line(e.what());
        spdlog::error("batch {}: {}", batch_key, out.error);
        conn_.reset();  // the transaction is gone; start clean
        out.ok = false;
        return out;
      }
    }
    out.ok = false;
    return out;
  }

 private:
  void reconnect() {
    conn_ = connect(options_);
    // Per-connection staging tables, emptied at every commit.
    pqxx::nontransaction tx(*conn_);
    tx.exec(R"SQL(
CREATE TEMP TABLE IF NOT EXISTS qf_stage_events (
  event_id text COLLATE "C", quiz_id bigint, user_id bigint, question_id integer,
  option_id integer, answered_at timestamptz, elapsed_ms integer) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS qf_stage_counted (
  quiz_id bigint, user_id bigint, question_id integer, event_id text COLLATE "C",
  answered_at timestamptz, option_id integer, correct boolean, points bigint,
  elapsed_ms integer) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS qf_stage_standings (
  quiz_id bigint, user_id bigint, score bigint, correct integer, time_ms bigint)
  ON COMMIT DELETE ROWS;
)SQL");
  }

  void run(pqxx::connection& c, int64_t quiz_id, const std::string& batch_key,
           const std::vector<const AnswerEvent*>& events, const DeriveFn& derive,
           CommitOutcome& out, bool& commit_sent) {
    pqxx::work tx(c);
    {
      pqxx::stream_to s(tx, "qf_stage_events");
      for (const AnswerEvent* e : events) {
        s << std::make_tuple(e->event_id, e->quiz_id, e->user_id, e->question_id, e->option_id,
                             format_rfc3339_ms(e->answered_at_ms), e->elapsed_ms);
      }
      s.complete();
    }
    const pqxx::result ins = tx.exec(R"SQL(
INSERT INTO answer_events (event_id, quiz_id, user_id, question_id, option_id, answered_at,
                           elapsed_ms)
SELECT event_id, quiz_id, user_id, question_id, option_id, answered_at, elapsed_ms
FROM qf_stage_events ORDER BY event_id
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id)SQL");
    out.inserted.assign(events.size(), false);
    {
      std::unordered_map<std::string_view, size_t> index;
      index.reserve(events.size());
      for (size_t i = 0; i < events.size(); ++i) index.emplace(events[i]->event_id, i);
      for (const auto& row : ins) {
        auto it = index.find(std::string_view(row[0].c_str(), row[0].size()));
        if (it != index.end()) out.inserted[it->second] = true;
      }
    }
    const DerivedRows rows = derive(out.inserted);
    if (!rows.counted.empty()) {
      {
        pqxx::stream_to s(tx, "qf_stage_counted");
        for (const auto& r : rows.counted) {
          s << std::make_tuple(r.quiz_id, r.user_id, r.question_id, r.event_id,
                               format_rfc3339_ms(r.answered_at_ms), r.option_id, r.correct,
                               r.points, r.elapsed_ms);
        }
        s.complete();
      }
      tx.exec(R"SQL(
INSERT INTO counted_answers AS c (quiz_id, user_id, question_id, event_id, answered_at,
                                  option_id, correct, points, elapsed_ms)
SELECT quiz_id, user_id, question_id, event_id, answered_at, option_id, correct, points,
       elapsed_ms
FROM qf_stage_counted ORDER BY quiz_id, user_id, question_id
ON CONFLICT (quiz_id, user_id, question_id) DO UPDATE SET
  event_id = EXCLUDED.event_id, answered_at = EXCLUDED.answered_at,
  option_id = EXCLUDED.option_id, correct = EXCLUDED.correct, points = EXCLUDED.points,
  elapsed_ms = EXCLUDED.elapsed_ms)SQL");
    }
    if (!rows.standings.empty()) {
      {
        pqxx::stream_to s(tx, "qf_stage_standings");
        for (const auto& r : rows.standings)
          s << std::make_tuple(r.quiz_id, r.user_id, r.score, r.correct, r.time_ms);
        s.complete();
      }
      tx.exec(R"SQL(
INSERT INTO standings AS s (quiz_id, user_id, score, correct, time_ms)
SELECT quiz_id, user_id, score, correct, time_ms
FROM qf_stage_standings ORDER BY quiz_id, user_id
ON CONFLICT (quiz_id, user_id) DO UPDATE SET
  score = EXCLUDED.score, correct = EXCLUDED.correct, time_ms = EXCLUDED.time_ms,
  updated_at = now())SQL");
    }
    tx.exec_params("INSERT INTO batches (batch_key, quiz_id, events) VALUES ($1, $2, $3)",
                   batch_key, quiz_id, static_cast<int64_t>(events.size()));
    commit_sent = true;
    tx.commit();
  }

  // The commit's outcome is unknown: it counts as committed only if its batch row is there.
  CommitOutcome& resolve_in_doubt(const std::string& batch_key, const std::string& why,
                                  CommitOutcome& out) {
    conn_.reset();
    spdlog::warn("batch {}: commit outcome unknown ({}); checking", batch_key, one_line(why));
    for (int attempt = 0; attempt < 20; ++attempt) {
      try {
        reconnect();
        pqxx::read_transaction tx(*conn_);
        const auto r = tx.exec_params("SELECT 1 FROM batches WHERE batch_key = $1", batch_key);
        out.ok = !r.empty();
        if (!out.ok) out.error = "commit did not happen: " + one_line(why);
        return out;
      } catch (const std::exception& e) {
        conn_.reset();
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
      }
    }
    out.ok = false;
    out.error = "commit outcome unknown and the database is unreachable: " + one_line(why);
    return out;
  }

  PgOptions options_;
  std::unique_ptr<pqxx::connection> conn_;
};

// Opens a connection with the session settings quizflow relies on. Throws pqxx errors.
std::unique_ptr<pqxx::connection> connect(const PgOptions& options) {
  auto c = std::make_unique<pqxx::connection>(options.url);
  pqxx::nontransaction tx(*c);
  tx.exec("SET statement_timeout = " + std::to_string(options.statement_timeout_ms));
  tx.exec("SET synchronous_commit = on");
  return c;
}

}  // namespace

struct PgStore::Admin {
  std::unique_ptr<pqxx::connection> conn;
};

PgStore::PgStore(PgOptions options)
    : options_(std::move(options)), admin_(std::make_unique<Admin>()) {}
PgStore::~PgStore() = default;

template <typename F>
auto PgStore::with_admin(F&& f) {
  std::lock_guard lock(admin_mu_);
  for (int attempt = 0;; ++attempt) {
    try {
      if (!admin_->conn || !admin_->conn->is_open()) admin_->conn = connect(options_);
      return f(*admin_->conn);
    } catch (const pqxx::broken_connection&) {
      admin_->conn.reset();
      if (attempt >= 1) throw;
    }
  }
}

void PgStore::migrate() {
  with_admin([](pqxx::connection& c) {
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
}

std::unique_ptr<BatchWriter> PgStore::open_writer() {
  return std::make_unique<PgBatchWriter>(options_);
}

SaveQuizResult PgStore::save_quiz(const QuizDef& quiz) {
  const std::string def = encode_quiz(quiz);
  return with_admin([&](pqxx::connection& c) {
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
}

std::vector<QuizDef> PgStore::load_quizzes() {
  return with_admin([](pqxx::connection& c) {
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
}

std::vector<CountedRow> PgStore::load_counted() {
  return with_admin([](pqxx::connection& c) {
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
}

bool PgStore::ping(std::string& why) {
  try {
    with_admin([](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      tx.exec("SELECT 1");
      return 0;
    });
    return true;
  } catch (const std::exception& e) {
    why = one_line(e.what());
    return false;
  }
}

}  // namespace quizflow::egress
