#include "egress/batch_writer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "core/log_rate.h"
#include "egress/batch_sql.h"
#include "egress/outbox_codec.h"
#include "egress/pg_conn.h"
#include "egress/pg_copy.h"

namespace quizflow::egress {

std::string one_line(const std::string& s) {
  std::string r = s;
  for (auto& c : r)
    if (c == '\n' || c == '\r') c = ' ';
  while (!r.empty() && r.back() == ' ') r.pop_back();
  return r;
}

namespace {

// Per-connection staging tables, emptied at every commit.
void create_staging(pqxx::connection_base& c) {
  pqxx::nontransaction tx(c);
  tx.exec(batch_sql::kCreateStaging);
}

// The stored rows were not what the engine expected (a fast-path statement found a row it
// thought absent, or missed one it thought present).
struct StateMismatch : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void encode_counted(BinaryCopy& bc, const std::vector<const CountedRow*>& rows) {
  bc.start(rows.size());
  for (const CountedRow* r : rows) {
    bc.row(9);
    bc.int8(r->quiz_id);
    bc.int8(r->user_id);
    bc.int4(r->question_id);
    bc.text(r->event_id);
    bc.timestamptz_ms(r->answered_at_ms);
    bc.int4(r->option_id);
    bc.boolean(r->correct);
    bc.int8(r->points);
    bc.int4(static_cast<int32_t>(r->elapsed_ms));
  }
}

void encode_standings(BinaryCopy& bc, const std::vector<const StandingRow*>& rows) {
  bc.start(rows.size());
  for (const StandingRow* r : rows) {
    bc.row(5);
    bc.int8(r->quiz_id);
    bc.int8(r->user_id);
    bc.int8(r->score);
    bc.int4(static_cast<int32_t>(r->correct));
    bc.int8(r->time_ms);
  }
}

// Writes `rows` (counted answers or standings): in the fast path new rows are copied into the
// table and the others updated through the staging table, each update matching exactly one
// stored row; in the safe path all rows are staged and upserted.
template <typename Row, typename Encode>
void write_rows(pqxx::work& tx, pg_conn* raw, BinaryCopy& bc, const std::vector<Row>& rows,
                bool upsert, bool (*stored)(const Row&), Encode encode, const char* copy_new,
                const char* copy_stage, const char* update, const char* upsert_sql) {
  if (rows.empty()) return;
  std::vector<const Row*> fresh, replace;
  for (const Row& r : rows) (upsert || stored(r) ? replace : fresh).push_back(&r);
  if (!fresh.empty()) {
    encode(bc, fresh);
    copy_in(raw, copy_new, bc.finish());
  }
  if (replace.empty()) return;
  encode(bc, replace);
  copy_in(raw, copy_stage, bc.finish());
  if (upsert) {
    tx.exec(upsert_sql);
    return;
  }
  const pqxx::result r = tx.exec(update);
  if (r.affected_rows() != replace.size())
    throw StateMismatch("expected to update " + std::to_string(replace.size()) +
                        " stored rows, found " + std::to_string(r.affected_rows()));
}

}  // namespace

struct PgBatchWriter::Attempt {
  const BatchTxn& txn;
  const DeriveFn& derive;
  bool upsert = false;  // the safe path (see commit)
};

PgBatchWriter::PgBatchWriter(std::shared_ptr<PgPool> pool, BatchMetrics& metrics)
    : pool_(std::move(pool)), metrics_(metrics) {}

namespace {

constexpr int kAttempts = 3;          // transaction attempts
constexpr int kResolveAttempts = 12;  // looks at an in-doubt COMMIT, within 10 s

// Waits before retry `n` (1, 2, …): base, 2 × base, 4 × base, … at most cap (milliseconds).
void backoff(int n, int base_ms, int cap_ms) {
  std::this_thread::sleep_for(
      std::chrono::milliseconds(std::min(cap_ms, base_ms << std::min(n - 1, 10))));
}

void warn_limited(const std::string& batch_key, const std::string& what) {
  static LogRate rate;
  if (int64_t more = 0; rate.allow(more))
    spdlog::warn("batch {}: {} ({} similar lines held back)", batch_key, what, more);
}

}  // namespace

Result<Committed> PgBatchWriter::commit(const BatchTxn& txn, const DeriveFn& derive) {
  Committed out;
  Attempt a{txn, derive};
  Status last = Status::unavailable("no attempt was made");
  bool rerun = false;  // the last pass fell back to upserts: run again at once, not a retry
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    if (attempt > 1 && !rerun) {
      metrics_.retries.fetch_add(1, std::memory_order_relaxed);
      backoff(attempt - 1, 100, 2000);
    }
    rerun = false;
    InFlight f;
    std::optional<std::string> lost_commit;  // set when COMMIT was sent and its reply lost
    std::optional<PgPool::Lease> lease;
    try {
      lease.emplace(pool_->checkout());
      PgPool::Conn& conn = lease->conn();
      if (!conn.staged) {
        create_staging(*conn.c);
        conn.staged = true;
      }
      run(conn, a, out, f);
      return out;
    } catch (const PoolTimeout& e) {
      return Status::timeout(e.what());
    } catch (const pqxx::in_doubt_error& e) {
      // libpqxx's own "COMMIT sent, reply lost" (not a broken_connection: both are failures).
      if (lease) lease->discard();
      lease.reset();
      lost_commit = e.what();
    } catch (const pqxx::broken_connection& e) {
      if (lease) lease->discard();
      lease.reset();
      if (f.commit_sent) {
        lost_commit = e.what();
      } else {
        last = Status::unavailable("connection lost: " + one_line(e.what()));
        warn_limited(txn.batch_key, last.message() + " (attempt " + std::to_string(attempt) +
                                        " of " + std::to_string(kAttempts) + ")");
      }
    } catch (const std::exception& e) {
      const bool mismatch = dynamic_cast<const StateMismatch*>(&e) != nullptr ||
                            dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr;
      if (mismatch && !a.upsert && !f.commit_sent) {
        // The stored counted answers or standings differ from the engine's: redo with upserts,
        // which give the same result whatever is stored. The transaction was rolled back; the
        // connection is fine and keeps serving. Not counted as an attempt.
        a.upsert = true;
        rerun = true;
        metrics_.upsert_fallbacks.fetch_add(1, std::memory_order_relaxed);
        --attempt;
        warn_limited(txn.batch_key, "stored rows differ from the engine's state (" +
                                        one_line(e.what()) +
                                        "); redoing the transaction with upserts");
        continue;
      }
      if (lease) lease->discard();  // the transaction is gone; never reuse its state
      return Status::internal(one_line(e.what()));
    }
    if (lost_commit) {
      metrics_.in_doubt_resolved.fetch_add(1, std::memory_order_relaxed);
      auto committed = resolve_in_doubt(txn.batch_key, f, *lost_commit);
      if (!committed.ok()) return committed.status();
      if (*committed) return out;
      last = Status::unavailable("connection lost at COMMIT, which did not happen");
      warn_limited(txn.batch_key, last.message() + " (attempt " + std::to_string(attempt) + " of " +
                                      std::to_string(kAttempts) + ")");
    }
  }
  return last;
}

// COMMIT was sent and its answer lost. The transaction's id says what became of it; while the
// old session still runs it (the connection was lost, not the server's backend), that session is
// ended first, so the answer is final before anything is retried: never applied twice, never
// dropped.
Result<bool> PgBatchWriter::resolve_in_doubt(const std::string& batch_key, const InFlight& f,
                                             const std::string& why) {
  warn_limited(batch_key, "commit outcome unknown (" + one_line(why) + "); checking");
  // Bounded in time as well as in attempts: a checkout may itself wait (pool, connect timeout).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (int attempt = 1; attempt <= kResolveAttempts && std::chrono::steady_clock::now() < give_up;
       ++attempt) {
    try {
      auto lease = pool_->checkout();
      try {
        pqxx::nontransaction tx(*lease.conn().c);
        if (f.txid > 0) {
          const auto st = tx.exec_params("SELECT txid_status($1)", f.txid);
          if (!st[0][0].is_null()) {
            const std::string status = st[0][0].c_str();
            if (status == "committed") return true;
            if (status == "aborted") return false;
            tx.exec_params(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid = $1 AND backend_xid::text::bigint = $2",
                f.backend_pid, f.txid % (int64_t{1} << 32));
            backoff(attempt, 10, 1000);
            continue;
          }
        }
        // No id (too old for txid_status): the batch key decides.
        const auto r = tx.exec_params("SELECT 1 FROM batches WHERE batch_key = $1", batch_key);
        return !r.empty();
      } catch (...) {
        lease.discard();
        throw;
      }
    } catch (const std::exception&) {
      backoff(attempt, 50, 1000);
    }
  }
  return Status::in_doubt("commit outcome unknown and the database is unreachable: " +
                          one_line(why));
}

template <typename F>
void PgBatchWriter::step(const char* name, F&& f) {
  if (!step_timer_) {
    f();
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  f();
  step_timer_(name, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

void PgBatchWriter::run(PgPool::Conn& conn, const Attempt& a, Committed& out, InFlight& f) {
  std::optional<pqxx::work> tx;
  step("begin", [&] { tx.emplace(*conn.c); });
  if (!conn.same_session())  // the staging tables went with the old session
    throw pqxx::broken_connection("libpqxx re-established the connection; its session is new");
  pg_conn* raw = conn.c->raw();
  BinaryCopy bc;
  step("encode_events", [&] {
    // Sorted by the event log's key (quiz_id, event_id bytewise as COLLATE "C"): index locks in
    // one order for all writers, and each quiz's rows in one narrow key range.
    std::vector<const AnswerEvent*> sorted(a.txn.events.begin(), a.txn.events.end());
    std::sort(sorted.begin(), sorted.end(), [](const AnswerEvent* x, const AnswerEvent* y) {
      return x->quiz_id != y->quiz_id ? x->quiz_id < y->quiz_id : x->event_id < y->event_id;
    });
    bc.start(sorted.size());
    for (const AnswerEvent* e : sorted) {
      bc.row(7);
      bc.int8(e->quiz_id);
      bc.text(e->event_id);
      bc.int8(e->user_id);
      bc.int4(e->question_id);
      bc.int4(static_cast<int32_t>(e->option_id));
      bc.timestamptz_ms(e->answered_at_ms);
      bc.int4(static_cast<int32_t>(e->elapsed_ms));
    }
    bc.finish();
  });
  bool all_new = false;
  step("copy_events", [&] {
    // First straight into the event log, as if every event were new (no index probe before each
    // insertion, no ids sent back); only when one is stored already, staged and inserted with
    // ON CONFLICT to learn which.
    // A plain savepoint (pqxx::subtransaction would send SAVEPOINT only with its first
    // statement, after this raw COPY).
    tx->exec("SAVEPOINT qf_events");
    try {
      copy_in(raw, batch_sql::kCopyEventsNew, bc.data());
      all_new = true;
    } catch (const pqxx::unique_violation&) {
      tx->exec("ROLLBACK TO SAVEPOINT qf_events");
    }
    // Not released when the COPY went through: COMMIT releases it, one round trip less.
  });
  if (all_new) {
    out.inserted.assign(a.txn.events.size(), true);
  } else {
    step("insert_events", [&] {
      copy_in(raw, batch_sql::kCopyEventsStage, bc.data());
      const pqxx::result ins = tx->exec(batch_sql::kInsertEvents);
      out.inserted.assign(a.txn.events.size(), false);
      // (quiz_id, event_id) -> index into the transaction's events.
      std::map<std::pair<int64_t, std::string_view>, size_t> index;
      for (size_t i = 0; i < a.txn.events.size(); ++i)
        index.emplace(
            std::pair{a.txn.events[i]->quiz_id, std::string_view(a.txn.events[i]->event_id)}, i);
      for (const auto& row : ins) {
        auto it = index.find(
            std::pair{row[0].as<int64_t>(), std::string_view(row[1].c_str(), row[1].size())});
        if (it != index.end()) out.inserted[it->second] = true;
      }
    });
  }
  DerivedRows rows;
  step("derive", [&] { rows = a.derive(out.inserted); });
  step("write_counted", [&] {
    write_rows<CountedRow>(
        *tx, raw, bc, rows.counted, a.upsert, [](const CountedRow& r) { return r.replaces; },
        encode_counted, batch_sql::kCopyCountedNew, batch_sql::kCopyCountedStage,
        batch_sql::kUpdateCounted, batch_sql::kUpsertCounted);
  });
  step("write_standings", [&] {
    write_rows<StandingRow>(
        *tx, raw, bc, rows.standings, a.upsert, [](const StandingRow& r) { return r.exists; },
        encode_standings, batch_sql::kCopyStandingsNew, batch_sql::kCopyStandingsStage,
        batch_sql::kUpdateStandings, batch_sql::kUpsertStandings);
  });
  step("insert_batch", [&] {
    const auto& ids = a.txn.quiz_ids;
    const int64_t single = ids.size() == 1 ? ids[0] : 0;
    const auto events = static_cast<int64_t>(a.txn.events.size());
    pqxx::result r;
    if (rows.outbox.empty()) {
      r = tx->exec_params(batch_sql::kInsertBatch, a.txn.batch_key, single, pg_id_array(ids),
                          events);
      out.outbox_id = 0;
    } else {
      r = tx->exec_params(batch_sql::kInsertBatchWithOutbox, a.txn.batch_key, single,
                          pg_id_array(ids), events, static_cast<int64_t>(rows.outbox.size()),
                          encode_outbox(rows.outbox));
      out.outbox_id = r[0][1].as<int64_t>();
    }
    f.txid = r[0][0].as<int64_t>();
    f.backend_pid = conn.c->backendpid();
  });
  f.commit_sent = true;
  step("commit", [&] { tx->commit(); });
}

Result<Finalized> PgBatchWriter::finalize(int64_t quiz_id, const FinalizeFn& fn, bool outbox) {
  // Idempotent by the quiz row's state: any failure is retried as a whole (a COMMIT whose reply
  // was lost is found finalized by the next attempt).
  Status last = Status::unavailable("no attempt was made");
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    if (attempt > 1) backoff(attempt - 1, 100, 2000);
    std::optional<PgPool::Lease> lease;
    try {
      lease.emplace(pool_->checkout());
      PgPool::Conn& conn = lease->conn();
      Finalized out;
      pqxx::work tx(*conn.c);
      const pqxx::result st = tx.exec_params(batch_sql::kLockQuiz, quiz_id);
      if (st.empty()) return Status::internal("no quiz " + std::to_string(quiz_id) + " is stored");
      if (std::string(st[0][0].c_str()) == "finalized") {
        tx.commit();
        out.already = true;
        return out;
      }
      std::vector<StandingRow> stored;
      for (const auto& row : tx.exec_params(batch_sql::kQuizStandings, quiz_id)) {
        stored.push_back(StandingRow{quiz_id, row[0].as<int64_t>(), row[1].as<int64_t>(),
                                     row[2].as<int64_t>(), row[3].as<int64_t>(), true});
      }
      FinalRows rows = fn(std::move(stored));
      pg_conn* raw = conn.c->raw();
      BinaryCopy bc;
      if (!rows.standings.empty()) {
        bc.start(rows.standings.size());
        for (const FinalStanding& f : rows.standings) {
          bc.row(6);
          bc.int8(quiz_id);
          bc.int4(static_cast<int32_t>(f.rank));
          bc.int8(f.user_id);
          bc.int8(f.standing.score);
          bc.int4(static_cast<int32_t>(f.standing.correct));
          bc.int8(f.standing.time_ms);
        }
        copy_in(raw, batch_sql::kCopyFinalStandings, bc.finish());
      }
      if (!rows.rewards.empty()) {
        bc.start(rows.rewards.size());
        for (const RewardRow& r : rows.rewards) {
          bc.row(4);
          bc.int8(quiz_id);
          bc.int8(r.user_id);
          bc.int4(static_cast<int32_t>(r.rank));
          bc.text(r.reward);
        }
        copy_in(raw, batch_sql::kCopyRewards, bc.finish());
      }
      // The notifications, kOutboxGroupMax to a row.
      const std::span<const Notification> all(rows.notifications);
      for (size_t i = 0; i < all.size(); i += kOutboxGroupMax) {
        const auto part = all.subspan(i, std::min(kOutboxGroupMax, all.size() - i));
        OutboxGroup g;
        if (outbox) {
          const pqxx::result r = tx.exec_params(
              batch_sql::kInsertOutbox, static_cast<int64_t>(part.size()), encode_outbox(part));
          g.outbox_id = r[0][0].as<int64_t>();
        }
        g.messages.assign(part.begin(), part.end());
        out.outbox.push_back(std::move(g));
      }
      tx.exec_params(batch_sql::kMarkFinalized, quiz_id,
                     static_cast<int64_t>(rows.standings.size()));
      tx.commit();
      out.players = static_cast<int64_t>(rows.standings.size());
      out.rewards = static_cast<int64_t>(rows.rewards.size());
      return out;
    } catch (const PoolTimeout& e) {
      last = Status::timeout(e.what());
    } catch (const pqxx::in_doubt_error& e) {
      if (lease) lease->discard();
      last = Status::unavailable("finalization commit outcome unknown: " + one_line(e.what()));
    } catch (const pqxx::broken_connection& e) {
      if (lease) lease->discard();
      last = Status::unavailable("connection lost: " + one_line(e.what()));
    } catch (const std::exception& e) {
      if (lease) lease->discard();
      return Status::internal(one_line(e.what()));
    }
    warn_limited("finalize-" + std::to_string(quiz_id),
                 last.message() + " (attempt " + std::to_string(attempt) + ")");
  }
  return last;
}

}  // namespace quizflow::egress
