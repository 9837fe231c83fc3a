#include "egress/batch_writer.h"

#include <spdlog/spdlog.h>

#include <optional>
#include <pqxx/pqxx>
#include <thread>
#include <unordered_map>

#include "egress/batch_sql.h"
#include "egress/pg_conn.h"
#include "pipeline/time_util.h"

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
void create_staging(pqxx::connection& c) {
  pqxx::nontransaction tx(c);
  tx.exec(batch_sql::kCreateStaging);
}

}  // namespace

PgBatchWriter::PgBatchWriter(std::shared_ptr<PgPool> pool) : pool_(std::move(pool)) {}

CommitOutcome PgBatchWriter::commit(int64_t quiz_id, const std::string& batch_key,
                                    const std::vector<const AnswerEvent*>& events,
                                    const DeriveFn& derive) {
  CommitOutcome out;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    bool commit_sent = false;
    std::optional<PgPool::Lease> lease;
    try {
      lease.emplace(pool_->checkout());
      PgPool::Conn& conn = lease->conn();
      if (!conn.staged) {
        create_staging(*conn.c);
        conn.staged = true;
      }
      run(*conn.c, quiz_id, batch_key, events, derive, out, commit_sent);
      out.ok = true;
      return out;
    } catch (const PoolTimeout& e) {
      out.error = e.what();
      return out;
    } catch (const pqxx::in_doubt_error& e) {
      if (lease) lease->discard();
      lease.reset();
      return resolve_in_doubt(batch_key, e.what(), out);
    } catch (const pqxx::broken_connection& e) {
      if (lease) lease->discard();
      lease.reset();
      if (commit_sent) return resolve_in_doubt(batch_key, e.what(), out);
      out.error = "connection lost: " + one_line(e.what());
      spdlog::warn("batch {}: {} (attempt {} of 3)", batch_key, out.error, attempt);
    } catch (const std::exception& e) {
      if (lease) lease->discard();  // the transaction is gone; never reuse its state
      out.error = one_line(e.what());
      spdlog::error("batch {}: {}", batch_key, out.error);
      return out;
    }
  }
  return out;
}

CommitOutcome PgBatchWriter::resolve_in_doubt(const std::string& batch_key, const std::string& why,
                                              CommitOutcome out) {
  spdlog::warn("batch {}: commit outcome unknown ({}); checking", batch_key, one_line(why));
  for (int attempt = 0; attempt < 20; ++attempt) {
    try {
      auto lease = pool_->checkout();
      try {
        pqxx::read_transaction tx(*lease.conn().c);
        const auto r = tx.exec_params("SELECT 1 FROM batches WHERE batch_key = $1", batch_key);
        out.ok = !r.empty();
        if (!out.ok) out.error = "commit did not happen: " + one_line(why);
        return out;
      } catch (...) {
        lease.discard();
        throw;
      }
    } catch (const std::exception&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }
  out.ok = false;
  out.error = "commit outcome unknown and the database is unreachable: " + one_line(why);
  return out;
}

void PgBatchWriter::run(pqxx::connection_base& c, int64_t quiz_id, const std::string& batch_key,
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
  const pqxx::result ins = tx.exec(batch_sql::kInsertEvents);
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
                             format_rfc3339_ms(r.answered_at_ms), r.option_id, r.correct, r.points,
                             r.elapsed_ms);
      }
      s.complete();
    }
    tx.exec(batch_sql::kUpsertCounted);
  }
  if (!rows.standings.empty()) {
    {
      pqxx::stream_to s(tx, "qf_stage_standings");
      for (const auto& r : rows.standings)
        s << std::make_tuple(r.quiz_id, r.user_id, r.score, r.correct, r.time_ms);
      s.complete();
    }
    tx.exec(batch_sql::kUpsertStandings);
  }
  tx.exec_params(batch_sql::kInsertBatch, batch_key, quiz_id, static_cast<int64_t>(events.size()));
  commit_sent = true;
  tx.commit();
}

}  // namespace quizflow::egress
