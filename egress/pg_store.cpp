#include "egress/pg_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <pqxx/pqxx>
#include <tuple>

#include "core/time_util.h"
#include "egress/batch_sql.h"
#include "egress/batch_writer.h"
#include "egress/migrations.h"
#include "egress/outbox_codec.h"
#include "egress/pg_conn.h"
#include "egress/pg_copy.h"

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

namespace {

// Every quiz in the log, ascending: one index probe each (a skip scan of the primary key).
std::vector<int64_t> quizzes_in_log(pqxx::transaction_base& tx) {
  std::vector<int64_t> out;
  for (const auto& row : tx.exec(R"SQL(
WITH RECURSIVE q AS (
  SELECT min(quiz_id) AS id FROM answer_events
  UNION ALL
  SELECT (SELECT min(quiz_id) FROM answer_events WHERE quiz_id > q.id) FROM q WHERE q.id IS NOT NULL)
SELECT id FROM q WHERE id IS NOT NULL)SQL"))
    out.push_back(row[0].as<int64_t>());
  return out;
}

// One quiz's events by binary COPY, in the primary key's order (no sort however large the
// log), inside the caller's transaction; returns how many.
int64_t copy_quiz_events(pg_conn* raw, int64_t quiz, const Store::EventSink& sink) {
  const std::string sql =
      "COPY (SELECT quiz_id, event_id, user_id, question_id, option_id, answered_at, "
      "elapsed_ms FROM answer_events WHERE quiz_id = " +
      std::to_string(quiz) + " ORDER BY event_id) TO STDOUT (FORMAT binary)";
  AnswerEvent e;
  return copy_rows_out(raw, sql.c_str(), 7, [&](const BinaryCopyReader::Row& r) {
    e.quiz_id = BinaryCopyReader::int8(r[0]);
    e.event_id.assign(r[1].value);
    e.user_id = BinaryCopyReader::int8(r[2]);
    e.question_id = BinaryCopyReader::int4(r[3]);
    e.option_id = BinaryCopyReader::int4(r[4]);
    e.answered_at_ms = BinaryCopyReader::timestamptz_ms(r[5]);
    e.elapsed_ms = BinaryCopyReader::int4(r[6]);
    sink(e);
  });
}

// One quiz's counted answers by binary COPY, by (user_id, question_id), inside the caller's
// transaction.
std::vector<CountedRow> counted_of(pg_conn* raw, int64_t quiz_id) {
  const std::string sql =
      "COPY (SELECT quiz_id, user_id, question_id, event_id, answered_at, option_id, correct, "
      "points, elapsed_ms FROM counted_answers WHERE quiz_id = " +
      std::to_string(quiz_id) + " ORDER BY user_id, question_id) TO STDOUT (FORMAT binary)";
  std::vector<CountedRow> out;
  copy_rows_out(raw, sql.c_str(), 9, [&](const BinaryCopyReader::Row& r) {
    CountedRow c;
    c.quiz_id = BinaryCopyReader::int8(r[0]);
    c.user_id = BinaryCopyReader::int8(r[1]);
    c.question_id = BinaryCopyReader::int4(r[2]);
    c.event_id.assign(r[3].value);
    c.answered_at_ms = BinaryCopyReader::timestamptz_ms(r[4]);
    c.option_id = BinaryCopyReader::int4(r[5]);
    c.correct = BinaryCopyReader::boolean(r[6]);
    c.points = BinaryCopyReader::int8(r[7]);
    c.elapsed_ms = BinaryCopyReader::int4(r[8]);
    out.push_back(std::move(c));
  });
  return out;
}

// Whether two sets of counted answers (any order) hold the same values.
bool same_counted(std::vector<CountedRow> a, std::vector<CountedRow> b) {
  if (a.size() != b.size()) return false;
  auto key = [](const CountedRow& r) { return std::tie(r.user_id, r.question_id); };
  auto by_key = [&](const CountedRow& x, const CountedRow& y) { return key(x) < key(y); };
  std::sort(a.begin(), a.end(), by_key);
  std::sort(b.begin(), b.end(), by_key);
  for (size_t i = 0; i < a.size(); ++i) {
    const CountedRow &x = a[i], &y = b[i];
    if (std::tie(x.user_id, x.question_id, x.event_id, x.answered_at_ms, x.option_id, x.correct,
                 x.points, x.elapsed_ms) != std::tie(y.user_id, y.question_id, y.event_id,
                                                     y.answered_at_ms, y.option_id, y.correct,
                                                     y.points, y.elapsed_ms))
      return false;
  }
  return true;
}

std::vector<StandingRow> standings_of(pqxx::transaction_base& tx, int64_t quiz_id) {
  std::vector<StandingRow> out;
  for (const auto& row :
       tx.exec_params("SELECT user_id, score, correct, time_ms FROM standings WHERE quiz_id = $1 "
                      "ORDER BY user_id",
                      quiz_id)) {
    out.push_back(StandingRow{quiz_id, row[0].as<int64_t>(), row[1].as<int64_t>(),
                              row[2].as<int64_t>(), row[3].as<int64_t>(), true});
  }
  return out;
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
    if (const int known = migrations().back().version; current > known)
      spdlog::warn(
          "the database schema is at version {}, newer than this quizflow knows ({}): a rollback? "
          "running on it (docs/operations.md, rolling back)",
          current, known);
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

Result<int> PgStore::pending_migrations() try {
  return with_conn([](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    int current = 0;
    if (!tx.exec("SELECT to_regclass('schema_migrations')")[0][0].is_null())
      current = tx.exec("SELECT coalesce(max(version), 0) FROM schema_migrations")[0][0].as<int>();
    int pending = 0;
    for (const auto& m : migrations())
      if (m.version > current) ++pending;
    return pending;
  });
} catch (const std::exception& e) {
  return status_of("read the schema version", e);
}

Result<std::map<int32_t, int64_t>> PgStore::load_offsets(const std::string& group,
                                                         const std::string& topic) try {
  return with_conn([&](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    std::map<int32_t, int64_t> out;
    for (const auto& row :
         tx.exec_params("SELECT partition, max(next_offset) FROM consumer_offsets "
                        "WHERE group_id = $1 AND topic = $2 GROUP BY partition",
                        group, topic))
      out[row[0].as<int32_t>()] = row[1].as<int64_t>();
    return out;
  });
} catch (const std::exception& e) {
  return status_of("read the stored consumer offsets", e);
}

Result<int64_t> PgStore::prune_offsets(const std::string& group, const std::string& topic) try {
  return with_conn([&](pqxx::connection_base& c) {
    pqxx::work tx(c);
    const auto r = tx.exec_params(R"SQL(
DELETE FROM consumer_offsets o
USING (SELECT partition, max(next_offset) AS top FROM consumer_offsets
       WHERE group_id = $1 AND topic = $2 GROUP BY partition) m
WHERE o.group_id = $1 AND o.topic = $2 AND o.partition = m.partition AND o.next_offset < m.top)SQL",
                                  group, topic);
    tx.commit();
    return static_cast<int64_t>(r.affected_rows());
  });
} catch (const std::exception& e) {
  return status_of("prune the stored consumer offsets", e);
}

Result<std::unique_ptr<BatchWriter>> PgStore::open_writer(BatchMetrics& metrics) {
  return std::unique_ptr<BatchWriter>(std::make_unique<PgBatchWriter>(pool_, metrics));
}

namespace {

// Stores `quiz` unless a quiz with its id is: created, the same, or another (conflict).
SaveQuizResult save_quiz_in(pqxx::transaction_base& tx, const QuizDef& quiz) {
  const std::string def = encode_quiz(quiz);
  const auto ins = tx.exec_params(R"SQL(
INSERT INTO quizzes (quiz_id, title, opens_at, closes_at, definition)
VALUES ($1, $2, $3::timestamptz, $4::timestamptz, $5::jsonb)
ON CONFLICT (quiz_id) DO NOTHING RETURNING quiz_id)SQL",
                                  quiz.quiz_id, quiz.title, format_rfc3339_ms(quiz.opens_at_ms),
                                  format_rfc3339_ms(quiz.closes_at_ms), def);
  if (ins.empty()) {
    const auto cur =
        tx.exec_params("SELECT definition::text FROM quizzes WHERE quiz_id = $1", quiz.quiz_id);
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
  return SaveQuizResult::created;
}

}  // namespace

Result<SaveQuizResult> PgStore::save_quiz(const QuizDef& quiz) try {
  return with_conn([&](pqxx::connection_base& c) {
    pqxx::work tx(c);
    const SaveQuizResult r = save_quiz_in(tx, quiz);
    tx.commit();
    return r;
  });
} catch (const std::exception& e) {
  return status_of("save quiz", e);
}

namespace {

QuizState state_of_text(const char* s) { return quiz_state_of(s).value_or(QuizState::open); }

}  // namespace

Result<StoredQuizzes> PgStore::load_quizzes() try {
  return with_conn([](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    StoredQuizzes out;
    for (const auto& row : tx.exec(
             "SELECT quiz_id, definition::text, state FROM quizzes WHERE state <> 'finalized'")) {
      auto d = decode_quiz(std::string_view(row[1].c_str(), row[1].size()));
      if (!d.quiz) {
        spdlog::error("quiz {} has an unreadable stored definition ({}: {}); skipped",
                      row[0].as<int64_t>(), d.field, d.message);
        continue;
      }
      out.live.push_back(QuizRecord{std::move(*d.quiz), state_of_text(row[2].c_str())});
    }
    for (const auto& row : tx.exec("SELECT quiz_id FROM quizzes WHERE state = 'finalized'"))
      out.finalized.push_back(row[0].as<int64_t>());
    return out;
  });
} catch (const std::exception& e) {
  return status_of("load quizzes", e);
}

Result<std::optional<QuizRecord>> PgStore::load_quiz(int64_t quiz_id) try {
  return with_conn([&](pqxx::connection_base& c) -> std::optional<QuizRecord> {
    pqxx::read_transaction tx(c);
    const auto r =
        tx.exec_params("SELECT definition::text, state FROM quizzes WHERE quiz_id = $1", quiz_id);
    if (r.empty()) return std::nullopt;
    auto d = decode_quiz(std::string_view(r[0][0].c_str(), r[0][0].size()));
    if (!d.quiz) throw std::runtime_error("unreadable stored definition: " + d.message);
    return QuizRecord{std::move(*d.quiz), state_of_text(r[0][1].c_str())};
  });
} catch (const std::exception& e) {
  return status_of("load quiz", e);
}

Result<StoredCounted> PgStore::load_counted(int64_t quiz_id) try {
  return with_conn([&](PgConnection& c) {
    // One snapshot for the rows and the version they belong to.
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(c);
    StoredCounted out;
    const auto v =
        tx.exec_params("SELECT standings_version FROM quizzes WHERE quiz_id = $1", quiz_id);
    out.version = v.empty() ? 0 : v[0][0].as<int64_t>();
    out.rows = counted_of(c.raw(), quiz_id);
    return out;
  });
} catch (const std::exception& e) {
  return status_of("load counted answers", e);
}

Result<std::vector<std::pair<int64_t, int64_t>>> PgStore::standings_versions(
    const std::vector<int64_t>& quiz_ids) try {
  if (quiz_ids.empty()) return std::vector<std::pair<int64_t, int64_t>>{};
  return with_conn([&](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    std::vector<std::pair<int64_t, int64_t>> out;
    for (const auto& row :
         tx.exec_params("SELECT quiz_id, standings_version FROM quizzes "
                        "WHERE quiz_id = ANY($1::bigint[]) AND standings_version > 0",
                        pg_id_array(quiz_ids)))
      out.emplace_back(row[0].as<int64_t>(), row[1].as<int64_t>());
    return out;
  });
} catch (const std::exception& e) {
  return status_of("read the standings versions", e);
}

Result<std::vector<std::pair<int64_t, QuizState>>> PgStore::quiz_states(
    const std::vector<int64_t>& quiz_ids) try {
  if (quiz_ids.empty()) return std::vector<std::pair<int64_t, QuizState>>{};
  return with_conn([&](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    std::vector<std::pair<int64_t, QuizState>> out;
    for (const auto& row :
         tx.exec_params("SELECT quiz_id, state FROM quizzes WHERE quiz_id = ANY($1::bigint[]) "
                        "AND state <> 'open'",
                        pg_id_array(quiz_ids)))
      out.emplace_back(row[0].as<int64_t>(), state_of_text(row[1].c_str()));
    return out;
  });
} catch (const std::exception& e) {
  return status_of("read the quizzes' states", e);
}

Result<std::vector<StandingRow>> PgStore::load_standings(int64_t quiz_id) try {
  return with_conn([&](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    return standings_of(tx, quiz_id);
  });
} catch (const std::exception& e) {
  return status_of("load standings", e);
}

Result<CloseResult> PgStore::close_quiz(int64_t quiz_id) try {
  return with_conn([&](pqxx::connection_base& c) {
    pqxx::work tx(c);
    const auto upd = tx.exec_params(
        "UPDATE quizzes SET state = 'closed', closed_at = now() "
        "WHERE quiz_id = $1 AND state = 'open' RETURNING 1",
        quiz_id);
    CloseResult res = CloseResult::closed;
    if (upd.empty()) {
      const auto cur = tx.exec_params("SELECT state FROM quizzes WHERE quiz_id = $1", quiz_id);
      res = cur.empty() ? CloseResult::unknown
            : state_of_text(cur[0][0].c_str()) == QuizState::finalized
                ? CloseResult::finalized
                : CloseResult::already_closed;
    }
    tx.commit();
    return res;
  });
} catch (const std::exception& e) {
  return status_of("close quiz", e);
}

namespace {

StandingEntry entry_of(const pqxx::row& row) {
  // rank, user_id, score, correct, time_ms
  return StandingEntry{row[0].as<int64_t>(), row[1].as<int64_t>(),
                       Standing{row[2].as<int64_t>(), row[3].as<int64_t>(), row[4].as<int64_t>()}};
}

}  // namespace

Result<FinalPage> PgStore::final_standings(int64_t quiz_id, size_t offset, size_t limit) try {
  return with_conn([&](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    FinalPage page;
    const auto n =
        tx.exec_params("SELECT coalesce(players, 0) FROM quizzes WHERE quiz_id = $1", quiz_id);
    page.total = n.empty() ? 0 : n[0][0].as<int64_t>();
    // Ranks are 1..players: the page is a range of the primary key.
    for (const auto& row :
         tx.exec_params("SELECT rank, user_id, score, correct, time_ms FROM final_standings "
                        "WHERE quiz_id = $1 AND rank > $2 ORDER BY rank LIMIT $3",
                        quiz_id, static_cast<int64_t>(offset), static_cast<int64_t>(limit)))
      page.entries.push_back(entry_of(row));
    return page;
  });
} catch (const std::exception& e) {
  return status_of("read final standings", e);
}

Result<std::optional<StandingEntry>> PgStore::final_standing(int64_t quiz_id, int64_t user_id) try {
  return with_conn([&](pqxx::connection_base& c) -> std::optional<StandingEntry> {
    pqxx::read_transaction tx(c);
    const auto r = tx.exec_params(
        "SELECT rank, user_id, score, correct, time_ms FROM final_standings "
        "WHERE quiz_id = $1 AND user_id = $2",
        quiz_id, user_id);
    if (r.empty()) return std::nullopt;
    return entry_of(r[0]);
  });
} catch (const std::exception& e) {
  return status_of("read a final standing", e);
}

namespace {

std::vector<RewardRow> rewards_of(pqxx::transaction_base& tx, int64_t quiz_id) {
  std::vector<RewardRow> out;
  for (const auto& row : tx.exec_params(
           "SELECT user_id, rank, reward FROM rewards WHERE quiz_id = $1 ORDER BY rank, user_id",
           quiz_id))
    out.push_back(RewardRow{row[0].as<int64_t>(), row[1].as<int64_t>(), row[2].as<std::string>()});
  return out;
}

}  // namespace

Result<std::vector<RewardRow>> PgStore::rewards(int64_t quiz_id) try {
  return with_conn([&](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    return rewards_of(tx, quiz_id);
  });
} catch (const std::exception& e) {
  return status_of("read rewards", e);
}

Result<std::vector<OutboxGroup>> PgStore::outbox_unsent(int64_t older_than_ms, int64_t max_messages,
                                                        const std::vector<int64_t>& skip) try {
  return with_conn([&](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    // The rows first (ids and sizes), then the payloads of those that fit the budget.
    std::vector<int64_t> ids;
    int64_t messages = 0;
    for (const auto& row :
         tx.exec_params("SELECT id, messages FROM outbox "
                        "WHERE created_at < clock_timestamp() - $1 * interval '1 millisecond' "
                        "AND NOT (id = ANY($2::bigint[])) ORDER BY id LIMIT 1000",
                        older_than_ms, pg_id_array(skip))) {
      const auto n = row[1].as<int64_t>();
      if (!ids.empty() && messages + n > max_messages) break;
      ids.push_back(row[0].as<int64_t>());
      messages += n;
    }
    std::vector<OutboxGroup> out;
    if (ids.empty()) return out;
    for (const auto& row :
         tx.exec_params("SELECT id, payload FROM outbox WHERE id = ANY($1::bigint[]) ORDER BY id",
                        pg_id_array(ids))) {
      out.push_back(OutboxGroup{row[0].as<int64_t>(),
                                decode_outbox(std::string_view(row[1].c_str(), row[1].size()))});
    }
    return out;
  });
} catch (const std::exception& e) {
  return status_of("read the outbox", e);
}

Result<int64_t> PgStore::outbox_sent(const std::vector<int64_t>& ids) try {
  if (ids.empty()) return int64_t{0};
  return with_conn([&](pqxx::connection_base& c) {
    pqxx::work tx(c);
    const auto r = tx.exec_params(
        "WITH d AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]) RETURNING messages) "
        "SELECT coalesce(sum(messages), 0)::bigint FROM d",
        pg_id_array(ids));
    tx.commit();
    return r[0][0].as<int64_t>();
  });
} catch (const std::exception& e) {
  return status_of("mark outbox rows sent", e);
}

Result<OutboxStats> PgStore::outbox_stats() try {
  return with_conn([](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    const auto r = tx.exec(
        "SELECT coalesce(sum(messages), 0)::bigint, "
        "coalesce((extract(epoch FROM clock_timestamp() - min(created_at)) * 1000)::bigint, 0) "
        "FROM outbox");
    return OutboxStats{r[0][0].as<int64_t>(), r[0][1].as<int64_t>()};
  });
} catch (const std::exception& e) {
  return status_of("outbox figures", e);
}

Result<int64_t> PgStore::count_events(const std::vector<int64_t>& quiz_ids) try {
  return with_conn([&](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    if (quiz_ids.empty()) return tx.exec("SELECT count(*) FROM answer_events")[0][0].as<int64_t>();
    return tx
        .exec_params("SELECT count(*) FROM answer_events WHERE quiz_id = ANY($1::bigint[])",
                     pg_id_array(quiz_ids))[0][0]
        .as<int64_t>();
  });
} catch (const std::exception& e) {
  return status_of("count the event log", e);
}

Result<int64_t> PgStore::read_events(const std::vector<int64_t>& quiz_ids, const EventSink& sink,
                                     const QuizSink& on_quiz) try {
  auto lease = pool_->checkout();
  try {
    PgConnection& c = *lease.conn().c;
    // One snapshot for every quiz's COPY.
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(c);
    std::vector<int64_t> quizzes = quiz_ids.empty() ? quizzes_in_log(tx) : quiz_ids;
    std::sort(quizzes.begin(), quizzes.end());
    quizzes.erase(std::unique(quizzes.begin(), quizzes.end()), quizzes.end());
    int64_t n = 0;
    for (int64_t quiz : quizzes) {
      if (on_quiz) {
        LoggedQuiz lq;
        lq.quiz_id = quiz;
        const auto q =
            tx.exec_params("SELECT definition::text, state FROM quizzes WHERE quiz_id = $1", quiz);
        if (!q.empty()) {
          auto d = decode_quiz(std::string_view(q[0][0].c_str(), q[0][0].size()));
          if (d.quiz) lq.record = QuizRecord{std::move(*d.quiz), state_of_text(q[0][1].c_str())};
        }
        if (lq.record && lq.record->state == QuizState::finalized)
          lq.rewards = rewards_of(tx, quiz);
        lq.events =
            tx.exec_params("SELECT count(*) FROM answer_events WHERE quiz_id = $1", quiz)[0][0]
                .as<int64_t>();
        on_quiz(lq);
      }
      n += copy_quiz_events(c.raw(), quiz, sink);
    }
    tx.commit();
    return Result<int64_t>(n);
  } catch (...) {
    lease.discard();  // a COPY cut short leaves the connection unusable
    throw;
  }
} catch (const std::exception& e) {
  return status_of("read the event log", e);
}

Result<std::vector<int64_t>> PgStore::log_quizzes() try {
  return with_conn([](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    return quizzes_in_log(tx);
  });
} catch (const std::exception& e) {
  return status_of("list the event log's quizzes", e);
}

Result<RebuiltQuiz> PgStore::rebuild_quiz(int64_t quiz_id, const RebuildFn& compute,
                                          const QuizImport* import) try {
  auto lease = pool_->checkout();
  try {
    PgConnection& c = *lease.conn().c;
    pqxx::work tx(c);
    // Batch transactions hold their quizzes with the shared form of this lock, taken before
    // they write anything (qf_hold_quizzes): this waits for those in flight and holds off new
    // ones until COMMIT.
    tx.exec_params("SELECT pg_advisory_xact_lock($1)", quiz_id);
    RebuiltQuiz out;
    const char* kQuiz = "SELECT definition::text, state FROM quizzes WHERE quiz_id = $1 FOR UPDATE";
    auto q = tx.exec_params(kQuiz, quiz_id);
    if (q.empty() && import && import->define) {
      if (save_quiz_in(tx, *import->define) == SaveQuizResult::created) out.created = true;
      q = tx.exec_params(kQuiz, quiz_id);
    }
    if (q.empty()) return out;
    auto d = decode_quiz(std::string_view(q[0][0].c_str(), q[0][0].size()));
    if (!d.quiz) throw std::runtime_error("unreadable stored definition: " + d.message);
    out.found = true;
    if (import && import->define && !(*import->define == *d.quiz)) {
      out.conflict = true;  // never overwritten; the transaction rolls back
      return out;
    }
    const std::string_view state(q[0][1].c_str());
    out.finalized = state == "finalized";
    if (import && !import->append.empty()) {
      tx.exec(batch_sql::kCreateImportEvents);
      copy_events(c.raw(), batch_sql::kCopyImportEvents, import->append);
      if (out.finalized) {
        out.refused = tx.exec(batch_sql::kCountNewImportEvents)[0][0].as<int64_t>();
      } else {
        out.appended =
            static_cast<int64_t>(tx.exec(batch_sql::kInsertImportEvents).affected_rows());
      }
    }
    std::vector<AnswerEvent> events;
    out.events =
        copy_quiz_events(c.raw(), quiz_id, [&](const AnswerEvent& e) { events.push_back(e); });
    out.before = standings_of(tx, quiz_id);
    DerivedRows rows = compute(*d.quiz, events);
    out.after = std::move(rows.standings);
    std::sort(out.after.begin(), out.after.end(),
              [](const StandingRow& a, const StandingRow& b) { return a.user_id < b.user_id; });
    if (out.finalized) return out;  // reported, not rewritten; the transaction rolls back
    // Rows are rewritten only when they differ from what the log gives (the common case of a
    // check or a repeated replay writes none); the version is raised either way, so engines
    // reload the quiz before they write it again (their memory might differ from both).
    auto same_standing = [](const StandingRow& x, const StandingRow& y) {
      return std::tie(x.user_id, x.score, x.correct, x.time_ms) ==
             std::tie(y.user_id, y.score, y.correct, y.time_ms);
    };
    // Each table on its own: a damaged standings table does not rewrite the counted answers.
    if (!same_counted(counted_of(c.raw(), quiz_id), rows.counted)) {
      tx.exec_params("DELETE FROM counted_answers WHERE quiz_id = $1", quiz_id);
      copy_counted(c.raw(), rows.counted);
    }
    if (!std::equal(out.before.begin(), out.before.end(), out.after.begin(), out.after.end(),
                    same_standing)) {
      tx.exec_params("DELETE FROM standings WHERE quiz_id = $1", quiz_id);
      copy_standings(c.raw(), out.after);
    }
    tx.exec_params(
        "UPDATE quizzes SET standings_version = standings_version + 1 WHERE quiz_id = $1", quiz_id);
    if (import && import->state == QuizState::closed && state == "open") {
      tx.exec_params("UPDATE quizzes SET state = 'closed', closed_at = now() WHERE quiz_id = $1",
                     quiz_id);
    } else if (import && import->state == QuizState::finalized && import->finalize) {
      const FinalRows final_rows = import->finalize(out.after);
      copy_final(c.raw(), quiz_id, final_rows);
      mark_finalized(tx, quiz_id, final_rows);
    }
    tx.commit();
    return out;
  } catch (...) {
    lease.discard();
    throw;
  }
} catch (const std::exception& e) {
  return status_of("rebuild the quiz's standings", e);
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
