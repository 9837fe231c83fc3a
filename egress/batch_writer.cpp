#include "egress/batch_writer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <span>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "core/log_rate.h"
#include "egress/batch_sql.h"
#include "egress/outbox_codec.h"
#include "egress/pg_conn.h"
#include "egress/pg_copy.h"
#include "egress/pg_pipeline.h"

namespace quizflow::egress {

std::string one_line(const std::string& s) {
  std::string r = s;
  for (auto& c : r)
    if (c == '\n' || c == '\r') c = ' ';
  while (!r.empty() && r.back() == ' ') r.pop_back();
  return r;
}

namespace {

// The writer's statements, prepared once per session.
void prepare_session(pg_conn* raw) {
  for (const batch_sql::Prepared& p : batch_sql::kBatchStatements) prepare(raw, p.name, p.sql);
}

// The fields of each kind of row, in the column order of its statements (batch_sql.h), written
// to a COPY row (BinaryCopy: one field after the other) or to one array per column (Columns).
template <typename Out>
void put(Out& o, const AnswerEvent& e) {
  o.int8(e.quiz_id);
  o.text(e.event_id);
  o.int8(e.user_id);
  o.int4(e.question_id);
  o.int4(static_cast<int32_t>(e.option_id));
  o.timestamptz_ms(e.answered_at_ms);
  o.int4(static_cast<int32_t>(e.elapsed_ms));
}
template <typename Out>
void put(Out& o, const CountedRow& r) {
  o.int8(r.quiz_id);
  o.int8(r.user_id);
  o.int4(r.question_id);
  o.text(r.event_id);
  o.timestamptz_ms(r.answered_at_ms);
  o.int4(r.option_id);
  o.boolean(r.correct);
  o.int8(r.points);
  o.int4(static_cast<int32_t>(r.elapsed_ms));
}
template <typename Out>
void put(Out& o, const StandingRow& r) {
  o.int8(r.quiz_id);
  o.int8(r.user_id);
  o.int8(r.score);
  o.int4(static_cast<int32_t>(r.correct));
  o.int8(r.time_ms);
}
// The element types of those columns, for the array parameters.
template <typename Row>
constexpr std::initializer_list<uint32_t> kTypes = {};
template <>
constexpr std::initializer_list<uint32_t> kTypes<AnswerEvent> = {
    BinaryArray::kInt8, BinaryArray::kText,        BinaryArray::kInt8, BinaryArray::kInt4,
    BinaryArray::kInt4, BinaryArray::kTimestamptz, BinaryArray::kInt4};
template <>
constexpr std::initializer_list<uint32_t> kTypes<CountedRow> = {
    BinaryArray::kInt8, BinaryArray::kInt8,        BinaryArray::kInt4,
    BinaryArray::kText, BinaryArray::kTimestamptz, BinaryArray::kInt4,
    BinaryArray::kBool, BinaryArray::kInt8,        BinaryArray::kInt4};
template <>
constexpr std::initializer_list<uint32_t> kTypes<StandingRow> = {
    BinaryArray::kInt8, BinaryArray::kInt8, BinaryArray::kInt8, BinaryArray::kInt4,
    BinaryArray::kInt8};

// Each field goes to the next column's array.
class Columns {
 public:
  Columns(std::initializer_list<uint32_t> types, size_t rows) {
    for (uint32_t t : types) cols_.emplace_back(t, rows);
  }
  void next_row() { at_ = 0; }
  void text(std::string_view v) { cols_[at_++].text(v); }
  void int8(int64_t v) { cols_[at_++].int8(v); }
  void int4(int32_t v) { cols_[at_++].int4(v); }
  void boolean(bool v) { cols_[at_++].boolean(v); }
  void timestamptz_ms(int64_t v) { cols_[at_++].timestamptz_ms(v); }
  const std::vector<BinaryArray>& arrays() const { return cols_; }

 private:
  std::vector<BinaryArray> cols_;
  size_t at_ = 0;
};

// Rows sorted by their table's key: index locks in one order for all writers, and each quiz's
// rows in one narrow key range (event_id compares bytewise, as COLLATE "C").
bool key_less(const AnswerEvent* x, const AnswerEvent* y) {
  return std::tie(x->quiz_id, x->event_id) < std::tie(y->quiz_id, y->event_id);
}
bool key_less(const CountedRow* x, const CountedRow* y) {
  return std::tie(x->quiz_id, x->user_id, x->question_id) <
         std::tie(y->quiz_id, y->user_id, y->question_id);
}
bool key_less(const StandingRow* x, const StandingRow* y) {
  return std::tie(x->quiz_id, x->user_id) < std::tie(y->quiz_id, y->user_id);
}
template <typename Row>
void sort_by_key(std::vector<const Row*>& rows) {
  std::sort(rows.begin(), rows.end(), [](const Row* x, const Row* y) { return key_less(x, y); });
}

template <typename Row>
const std::string& copy_rows(BinaryCopy& bc, const std::vector<const Row*>& rows) {
  bc.start(rows.size());
  for (const Row* r : rows) {
    bc.row(static_cast<int16_t>(kTypes<Row>.size()));
    put(bc, *r);
  }
  return bc.finish();
}

template <typename Row>
Columns array_rows(const std::vector<const Row*>& rows) {
  Columns c(kTypes<Row>, rows.size());
  for (const Row* r : rows) {
    c.next_row();
    put(c, *r);
  }
  return c;
}

PipelineStatement statement(const batch_sql::Prepared& p, const Columns& c) {
  PipelineStatement st{p.name, nullptr, {}};
  for (const BinaryArray& a : c.arrays()) st.params.push_back(PipelineParam{a.data(), true});
  return st;
}

// A COPY of rows the engine holds for new found one stored.
struct StateMismatch : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int64_t first_int(const PipelineReply& r, size_t col) {
  return r.rows.empty() || r.rows[0].size() <= col ? 0 : std::stoll(r.rows[0][col]);
}

template <typename Row>
void copy_table(pg_conn* raw, const char* copy_sql, std::span<const Row> rows) {
  if (rows.empty()) return;
  std::vector<const Row*> sorted;
  for (const Row& r : rows) sorted.push_back(&r);
  sort_by_key(sorted);
  BinaryCopy bc;
  copy_in(raw, copy_sql, copy_rows(bc, sorted));
}

}  // namespace

void copy_counted(pg_conn* raw, const std::vector<CountedRow>& rows) {
  copy_table(raw, batch_sql::kCopyCounted, std::span<const CountedRow>(rows));
}

void copy_standings(pg_conn* raw, const std::vector<StandingRow>& rows) {
  copy_table(raw, batch_sql::kCopyStandings, std::span<const StandingRow>(rows));
}

void copy_events(pg_conn* raw, const char* copy_sql, std::span<const AnswerEvent> rows) {
  copy_table(raw, copy_sql, rows);
}

void copy_final(pg_conn* raw, int64_t quiz_id, const FinalRows& rows) {
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
}

void mark_finalized(pqxx::transaction_base& tx, int64_t quiz_id, const FinalRows& rows) {
  tx.exec_params(batch_sql::kMarkFinalized, quiz_id, static_cast<int64_t>(rows.standings.size()));
}

struct PgBatchWriter::Attempt {
  const BatchTxn& txn;
  const DeriveFn& derive;
  bool events_stored = false;  // some of the events are in the log already (see commit)
  bool upsert_all = false;     // a COPY found a row stored that the engine held for new
};

PgBatchWriter::PgBatchWriter(std::shared_ptr<PgPool> pool, BatchMetrics& metrics)
    : pool_(std::move(pool)), metrics_(metrics) {}

namespace {

constexpr int kAttempts = 3;          // transaction attempts
constexpr int kResolveAttempts = 12;  // looks at an in-doubt COMMIT, within 10 s

// The server's primary message of an error ("ERROR:  <message>"), without its DETAIL (which
// quotes the whole failing row) or CONTEXT lines: what a client may be told.
std::string primary_message(const std::string& what) {
  size_t from = what.find("ERROR:");
  from = from == std::string::npos ? 0 : from + 6;
  while (from < what.size() && what[from] == ' ') ++from;
  size_t to = what.size();
  for (const char* next : {"\n", "DETAIL:", "HINT:", "CONTEXT:"})
    to = std::min(to, what.find(next, from));
  while (to > from && (what[to - 1] == ' ' || what[to - 1] == '\t')) --to;
  return what.substr(from, to - from);
}

// A data exception (class 22) or an integrity constraint violation (class 23): the rows, not
// the server, are at fault; retrying the same rows fails again.
bool refuses_data(const pqxx::sql_error& e) {
  const std::string& s = e.sqlstate();
  return s.size() == 5 && (s.rfind("22", 0) == 0 || s.rfind("23", 0) == 0);
}

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
  bool rerun = false;  // the last pass found stored events: run again at once, not a retry
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
      // libpqxx 6.4 may have re-established the connection: its session is new.
      if (!conn.same_session()) throw pqxx::broken_connection("the session was re-established");
      pg_conn* raw = conn.c->raw();
      if (!conn.prepared) {
        prepare_session(raw);
        conn.prepared = true;
      }
      backend_pid_ = conn.c->backendpid();
      try {
        run(raw, a, out, f);
      } catch (...) {
        rollback_open(raw);  // a transaction left open by a failed statement
        throw;
      }
      backend_pid_ = 0;
      return out;
    } catch (const PoolTimeout& e) {
      backend_pid_ = 0;
      return Status::timeout(e.what());
    } catch (const pqxx::in_doubt_error& e) {
      backend_pid_ = 0;
      if (lease) lease->discard();
      lease.reset();
      lost_commit = e.what();
    } catch (const pqxx::broken_connection& e) {
      backend_pid_ = 0;
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
      backend_pid_ = 0;
      if (const auto* se = dynamic_cast<const pqxx::sql_error*>(&e);
          se && se->sqlstate() == "QF001") {
        // A replay rebuilt a quiz's standings: nothing was stored; the engine reloads the quiz.
        return Status::stale(one_line(e.what()));
      }
      if (dynamic_cast<const pqxx::unique_violation*>(&e) && !a.events_stored) {
        // Some event is in the log already (a client's retry): the transaction was rolled back;
        // redo it learning which events are new. Not counted as an attempt.
        a.events_stored = true;
        rerun = true;
        --attempt;
        continue;
      }
      if (dynamic_cast<const StateMismatch*>(&e) && !a.upsert_all) {
        // Stored rows differ from the engine's state: redo with upserts only, which give the
        // same result whatever is stored. Not counted as an attempt.
        a.upsert_all = true;
        rerun = true;
        --attempt;
        metrics_.state_mismatches.fetch_add(1, std::memory_order_relaxed);
        warn_limited(txn.batch_key, one_line(e.what()) + "; redoing it with upserts");
        continue;
      }
      if (lease) lease->discard();  // never reuse a session whose state is unclear
      if (const auto* se = dynamic_cast<const pqxx::sql_error*>(&e); se && refuses_data(*se))
        return Status::invalid("the database refused the batch's data (SQLSTATE " + se->sqlstate() +
                               "): " + one_line(e.what()));
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

// At most this many probes per search: a batch whose every row is refused costs 2n - 1 of them.
constexpr int kMaxProbes = 512;

Result<std::vector<RefusedEvent>> PgBatchWriter::refused_events(
    std::span<const AnswerEvent* const> events) try {
  PgPool::Lease lease = pool_->checkout();
  PgPool::Conn& conn = lease.conn();
  if (!conn.same_session()) throw pqxx::broken_connection("the session was re-established");
  pg_conn* raw = conn.c->raw();
  if (!conn.prepared) {
    prepare_session(raw);
    conn.prepared = true;
  }
  std::vector<RefusedEvent> refused;
  int probes = 0;
  std::string reason;  // of the last probe refused
  // Whether the event log takes events [lo, hi) (stored ones skipped); undone either way, and
  // the savepoint released so that probes never nest.
  auto takes = [&](size_t lo, size_t hi) {
    ++probes;
    std::vector<const AnswerEvent*> part(events.begin() + static_cast<std::ptrdiff_t>(lo),
                                         events.begin() + static_cast<std::ptrdiff_t>(hi));
    sort_by_key(part);  // the writers' lock order
    const Columns cols = array_rows(part);
    std::vector<PipelineReply> ignored;
    try {
      run_pipeline(raw,
                   {{nullptr, "SAVEPOINT qf_probe", {}},
                    statement(batch_sql::kInsertNewEvents, cols),
                    {nullptr, "ROLLBACK TO SAVEPOINT qf_probe", {}},
                    {nullptr, "RELEASE SAVEPOINT qf_probe", {}}},
                   ignored);
      return true;
    } catch (const pqxx::sql_error& e) {
      if (!refuses_data(e)) throw;
      reason = "SQLSTATE " + e.sqlstate() + ": " + primary_message(e.what());
      run_pipeline(raw,
                   {{nullptr, "ROLLBACK TO SAVEPOINT qf_probe", {}},
                    {nullptr, "RELEASE SAVEPOINT qf_probe", {}}},
                   ignored);
      return false;
    }
  };
  // Halves that the log refuses are split until single events remain (within the budget).
  std::function<void(size_t, size_t)> bisect = [&](size_t lo, size_t hi) {
    if (lo >= hi || probes >= kMaxProbes || takes(lo, hi)) return;
    if (hi - lo == 1) return refused.push_back(RefusedEvent{lo, reason});
    const size_t mid = lo + (hi - lo) / 2;
    bisect(lo, mid);
    bisect(mid, hi);
  };
  try {
    std::vector<PipelineReply> ignored;
    run_pipeline(raw, {{nullptr, "BEGIN", {}}}, ignored);
    bisect(0, events.size());
    rollback_open(raw);  // nothing of the probes is kept
  } catch (...) {
    rollback_open(raw);
    lease.discard();
    throw;
  }
  if (probes >= kMaxProbes)
    spdlog::warn("looking for refused events: stopped after {} probes with {} found", probes,
                 refused.size());
  return refused;
} catch (const std::exception& e) {
  return Status::unavailable("looking for the refused events failed: " + one_line(e.what()));
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
        if (f.txid == 0 && f.backend_pid > 0) {
          // The reply was lost before the transaction's id arrived: the old session must be gone
          // before the batch key can tell (its transaction may still be running). A pid taken
          // again by a new session within these moments would be ended too: a lost connection
          // for that session, which it survives like any other.
          const auto alive = tx.exec_params(
              "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1",
              f.backend_pid);
          if (!alive.empty()) {
            backoff(attempt, 10, 1000);
            continue;
          }
        }
        // No id, or too old for txid_status: the batch key decides.
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
  const auto t0 = std::chrono::steady_clock::now();
  f();
  const auto took = std::chrono::steady_clock::now() - t0;
  metrics_.steps.record(name, std::chrono::duration_cast<std::chrono::microseconds>(took).count());
  if (step_timer_) step_timer_(name, std::chrono::duration<double>(took).count());
}

// Below this many rows of a kind, they travel as array parameters inside the pipeline; from it
// on, by binary COPY before it: two round trips each, but cheaper per row (multi-row heap
// inserts), which pays once round trips no longer dominate.
constexpr size_t kCopyFrom = 128;

// The common case (a hot quiz's small batches) costs one round trip: BEGIN, the events, the
// counted answers, the standings, the batch row (+ outbox row) and COMMIT go out as one libpq
// pipeline. Many new rows of a kind go by binary COPY first. With stored events among the
// batch's (a client's retry), one round trip first appends the new ones and learns which.
void PgBatchWriter::run(pg_conn* raw, const Attempt& a, Committed& out, InFlight& f) {
  // BEGIN, then the quizzes held against a replay and their versions checked (QF001: stale).
  BinaryArray hold_ids(BinaryArray::kInt8, a.txn.quiz_ids.size());
  for (int64_t q : a.txn.quiz_ids) hold_ids.int8(q);
  BinaryArray hold_versions(BinaryArray::kInt8, a.txn.versions.size());
  for (int64_t v : a.txn.versions) hold_versions.int8(v);
  const std::vector<PipelineStatement> begin{
      {nullptr, "BEGIN", {}},
      {batch_sql::kHoldQuizzes.name,
       nullptr,
       {{hold_ids.data(), true}, {hold_versions.data(), true}}}};
  std::vector<PipelineStatement> pipeline;
  bool begun = false;  // BEGIN went out already (else it leads the pipeline)
  auto begin_now = [&] {
    if (begun) return;
    std::vector<PipelineReply> ignored;
    run_pipeline(raw, begin, ignored);
    begun = true;
  };
  const size_t n = a.txn.events.size();
  std::vector<const AnswerEvent*> events(a.txn.events.begin(), a.txn.events.end());
  BinaryCopy bc;
  std::optional<Columns> event_cols;
  step("encode_events", [&] {
    sort_by_key(events);
    if (a.events_stored || n < kCopyFrom)
      event_cols.emplace(array_rows(events));
    else
      copy_rows(bc, events);
  });
  if (a.events_stored) {
    step("insert_new_events", [&] {
      std::vector<PipelineReply> replies;
      std::vector<PipelineStatement> head = begin;
      head.push_back(statement(batch_sql::kInsertNewEvents, *event_cols));
      run_pipeline(raw, head, replies);
      begun = true;
      out.inserted.assign(n, false);
      // (quiz_id, event_id) -> index into the transaction's events.
      std::map<std::pair<int64_t, std::string_view>, size_t> index;
      for (size_t i = 0; i < n; ++i)
        index.emplace(
            std::pair{a.txn.events[i]->quiz_id, std::string_view(a.txn.events[i]->event_id)}, i);
      for (const auto& row : replies.at(begin.size()).rows) {
        auto it = index.find(std::pair{std::stoll(row.at(0)), std::string_view(row.at(1))});
        if (it != index.end()) out.inserted[it->second] = true;
      }
    });
  } else {
    out.inserted.assign(n, true);  // as if all were new: a stored one fails them (23505)
    if (event_cols) {
      pipeline = begin;
      pipeline.push_back(statement(batch_sql::kInsertEvents, *event_cols));
    } else {
      step("copy_events", [&] {
        begin_now();
        copy_in(raw, batch_sql::kCopyEvents, bc.data());
      });
    }
  }
  DerivedRows rows;
  step("derive", [&] { rows = a.derive(out.inserted); });
  // Rows the engine holds for new go by COPY when many (a stored one is a state mismatch);
  // the others are upserted, as absolute values, with the count of inserted rows returned.
  std::vector<const CountedRow*> counted, counted_copy;
  std::vector<const StandingRow*> standings, standings_copy;
  int64_t counted_new = 0, standings_new = 0;  // expected insertions by the upserts
  step("split_rows", [&] {
    for (const CountedRow& r : rows.counted) (r.replaces ? counted : counted_copy).push_back(&r);
    for (const StandingRow& r : rows.standings)
      (r.exists ? standings : standings_copy).push_back(&r);
    if (a.upsert_all || !begun || counted_copy.size() < kCopyFrom) {
      counted_new = static_cast<int64_t>(counted_copy.size());
      counted.insert(counted.end(), counted_copy.begin(), counted_copy.end());
      counted_copy.clear();
    }
    if (a.upsert_all || !begun || standings_copy.size() < kCopyFrom) {
      standings_new = static_cast<int64_t>(standings_copy.size());
      standings.insert(standings.end(), standings_copy.begin(), standings_copy.end());
      standings_copy.clear();
    }
    sort_by_key(counted);
    sort_by_key(counted_copy);
    sort_by_key(standings);
    sort_by_key(standings_copy);
  });
  try {
    if (!counted_copy.empty())
      step("copy_counted",
           [&] { copy_in(raw, batch_sql::kCopyCounted, copy_rows(bc, counted_copy)); });
    if (!standings_copy.empty())
      step("copy_standings",
           [&] { copy_in(raw, batch_sql::kCopyStandings, copy_rows(bc, standings_copy)); });
  } catch (const pqxx::unique_violation& e) {
    throw StateMismatch(std::string("a row the engine holds for new is stored: ") + e.what());
  }
  std::optional<Columns> counted_cols, standing_cols;
  std::string ids, events_text, single, messages, payload;
  std::vector<BinaryArray> offset_cols;  // the consumer's offsets (kInsertOffsets)
  offset_cols.reserve(4);
  constexpr size_t kAbsent = SIZE_MAX;
  size_t counted_at = kAbsent, standings_at = kAbsent;
  step("encode_rows", [&] {
    if (!counted.empty()) {
      counted_cols.emplace(array_rows(counted));
      counted_at = pipeline.size();
      pipeline.push_back(statement(batch_sql::kUpsertCounted, *counted_cols));
    }
    if (!standings.empty()) {
      standing_cols.emplace(array_rows(standings));
      standings_at = pipeline.size();
      pipeline.push_back(statement(batch_sql::kUpsertStandings, *standing_cols));
    }
    if (!a.txn.offsets.empty()) {
      const size_t k = a.txn.offsets.size();
      offset_cols.emplace_back(BinaryArray::kText, k);
      offset_cols.emplace_back(BinaryArray::kText, k);
      offset_cols.emplace_back(BinaryArray::kInt4, k);
      offset_cols.emplace_back(BinaryArray::kInt8, k);
      for (const PartitionOffset& o : a.txn.offsets) {
        offset_cols[0].text(o.group_id);
        offset_cols[1].text(o.topic);
        offset_cols[2].int4(o.partition);
        offset_cols[3].int8(o.next);
      }
      PipelineStatement st{batch_sql::kInsertOffsets.name, nullptr, {}};
      for (const BinaryArray& col : offset_cols)
        st.params.push_back(PipelineParam{col.data(), true});
      pipeline.push_back(std::move(st));
    }
    const auto& qs = a.txn.quiz_ids;
    ids = pg_id_array(qs);
    events_text = std::to_string(n);
    single = qs.size() == 1 ? std::to_string(qs[0]) : "0";
    std::vector<PipelineParam> params{{a.txn.batch_key}, {single}, {ids}, {events_text}};
    if (rows.outbox.empty()) {
      pipeline.push_back({batch_sql::kInsertBatch.name, nullptr, params});
    } else {
      messages = std::to_string(rows.outbox.size());
      payload = encode_outbox(rows.outbox);
      params.push_back({messages});
      params.push_back({payload});
      pipeline.push_back({batch_sql::kInsertBatchWithOutbox.name, nullptr, params});
    }
    pipeline.push_back({nullptr, "COMMIT", {}});
  });
  const size_t batch_at = pipeline.size() - 2;
  f.backend_pid = backend_pid_;
  step("send", [] {});  // the point just before the pipeline holding COMMIT goes out
  f.commit_sent = true;
  std::vector<PipelineReply> replies;
  step("round_trip", [&] {
    try {
      run_pipeline(raw, pipeline, replies);
    } catch (const pqxx::broken_connection&) {
      if (replies.size() > batch_at) f.txid = first_int(replies[batch_at], 0);
      throw;  // COMMIT's outcome is unknown
    } catch (const pqxx::sql_error&) {
      f.commit_sent = false;  // a statement failed: the server skipped COMMIT
      throw;
    }
  });
  f.txid = first_int(replies[batch_at], 0);
  out.outbox_id = rows.outbox.empty() ? 0 : first_int(replies[batch_at], 1);
  step("committed", [] {});  // COMMIT's reply is in
  // The upserts wrote the engine's values whatever was stored; a different count of inserted
  // rows means the stored rows differed from memory (someone else wrote them).
  const bool counted_differ =
      counted_at != kAbsent && first_int(replies[counted_at], 0) != counted_new;
  const bool standings_differ =
      standings_at != kAbsent && first_int(replies[standings_at], 0) != standings_new;
  if ((counted_differ || standings_differ) && !a.upsert_all) {  // (else counted already)
    metrics_.state_mismatches.fetch_add(1, std::memory_order_relaxed);
    warn_limited(a.txn.batch_key,
                 std::string("stored ") + (counted_differ ? "counted answers" : "standings") +
                     " differed from the engine's state (overwritten with the engine's values; "
                     "was the database written by hand or by another engine?)");
  }
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
      copy_final(conn.c->raw(), quiz_id, rows);
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
      mark_finalized(tx, quiz_id, rows);
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
