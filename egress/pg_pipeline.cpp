#include "egress/pg_pipeline.h"

#include <libpq-fe.h>

#include <pqxx/except>

#include "egress/batch_writer.h"
#include "egress/pg_copy.h"

namespace quizflow::egress {

namespace {

std::string sqlstate_of(const PGresult* r) {
  const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  return s ? s : "";
}

PipelineReply reply_of(PGresult* r) {
  PipelineReply out;
  const int rows = PQntuples(r), cols = PQnfields(r);
  out.rows.reserve(static_cast<size_t>(rows));
  for (int i = 0; i < rows; ++i) {
    auto& row = out.rows.emplace_back();
    row.reserve(static_cast<size_t>(cols));
    for (int j = 0; j < cols; ++j)
      row.emplace_back(PQgetvalue(r, i, j), static_cast<size_t>(PQgetlength(r, i, j)));
  }
  const char* affected = PQcmdTuples(r);
  out.affected = affected && *affected ? std::stoll(affected) : 0;
  return out;
}

}  // namespace

void prepare(pg_conn* conn, const char* name, const char* sql) {
  if (!conn) throw pqxx::broken_connection("prepare: not connected");
  PGresult* r = PQprepare(conn, name, sql, 0, nullptr);
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  const std::string why = ok ? "" : PQresultErrorMessage(r);
  const std::string state = ok ? "" : sqlstate_of(r);
  PQclear(r);
  if (!ok)
    throw_pq_error(conn, std::string("PREPARE ") + name + " failed: " + one_line(why), state, sql);
}

void run_pipeline(pg_conn* conn, const std::vector<PipelineStatement>& statements,
                  std::vector<PipelineReply>& replies) {
  if (!conn) throw pqxx::broken_connection("pipeline: not connected");
  if (PQenterPipelineMode(conn) != 1)
    throw_pq_error(conn, "cannot enter pipeline mode: " + one_line(PQerrorMessage(conn)), "", "");
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
  for (const PipelineStatement& s : statements) {
    values.clear();
    lengths.clear();
    formats.clear();
    for (const PipelineParam& p : s.params) {
      values.push_back(p.value.data());
      lengths.push_back(static_cast<int>(p.value.size()));
      formats.push_back(p.binary ? 1 : 0);
    }
    const int n = static_cast<int>(values.size());
    const int sent = s.prepared ? PQsendQueryPrepared(conn, s.prepared, n, values.data(),
                                                      lengths.data(), formats.data(), 0)
                                : PQsendQueryParams(conn, s.sql, n, nullptr, values.data(),
                                                    lengths.data(), formats.data(), 0);
    if (sent != 1) {
      // Only a lost connection fails a send; the pipeline's state is unknown: never reuse it.
      throw pqxx::broken_connection("pipeline: sending a statement failed: " +
                                    one_line(PQerrorMessage(conn)));
    }
  }
  if (PQpipelineSync(conn) != 1)
    throw pqxx::broken_connection("pipeline: sending Sync failed: " +
                                  one_line(PQerrorMessage(conn)));
  // Per statement: its result, then a null; after the last one the Sync's result.
  std::string err, state;
  const char* failed = "";
  for (const PipelineStatement& s : statements) {
    PGresult* r = PQgetResult(conn);
    if (!r) throw pqxx::broken_connection("pipeline: a result is missing (connection lost?)");
    const ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      if (err.empty()) replies.push_back(reply_of(r));
    } else if (st != PGRES_PIPELINE_ABORTED && err.empty()) {
      err = PQresultErrorMessage(r);
      state = sqlstate_of(r);
      failed = s.prepared ? s.prepared : s.sql;
    }
    PQclear(r);
    if (PQstatus(conn) == CONNECTION_BAD)
      throw pqxx::broken_connection("pipeline: connection lost: " +
                                    one_line(err.empty() ? PQerrorMessage(conn) : err));
    while (PGresult* extra = PQgetResult(conn)) PQclear(extra);  // the null ending its results
  }
  PGresult* sync = PQgetResult(conn);
  const bool synced = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  PQclear(sync);
  if (!synced || PQexitPipelineMode(conn) != 1)
    throw pqxx::broken_connection("pipeline: no Sync result (connection lost?): " +
                                  one_line(PQerrorMessage(conn)));
  if (!err.empty()) throw_pq_error(conn, "statement failed: " + one_line(err), state, failed);
}

void rollback_open(pg_conn* conn) noexcept {
  if (!conn || PQstatus(conn) != CONNECTION_OK) return;
  const PGTransactionStatusType t = PQtransactionStatus(conn);
  if (t != PQTRANS_INTRANS && t != PQTRANS_INERROR) return;
  PQclear(PQexec(conn, "ROLLBACK"));
}

}  // namespace quizflow::egress
