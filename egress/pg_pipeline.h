// libpq pipeline mode (PostgreSQL 14+): several statements sent at once and their results read
// after one Sync, so a whole transaction costs one round trip to the server. COPY is not allowed
// in a pipeline (shared pitfalls).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

extern "C" {
struct pg_conn;
}

namespace quizflow::egress {

struct PipelineParam {
  std::string_view value;  // must outlive run_pipeline
  bool binary = false;     // binary format (e.g. a BinaryArray), else text
};

struct PipelineStatement {
  const char* prepared = nullptr;  // a prepared statement's name, or
  const char* sql = nullptr;       // the text of one statement
  std::vector<PipelineParam> params;
};

// What one statement returned: its rows as text (NULL as ""), and how many rows a command
// affected.
struct PipelineReply {
  std::vector<std::vector<std::string>> rows;
  int64_t affected = 0;
};

// Prepares `sql` as statement `name` of the connection's session (one round trip). Throws like
// run_pipeline.
void prepare(pg_conn* conn, const char* name, const char* sql);

// Sends `statements` in pipeline mode followed by one Sync, then reads every result. `replies`
// gets one entry per statement that succeeded, in order, as the results arrive: after a failure
// the caller still knows what came back before it. Throws for the first failed statement once
// every result is read: pqxx::broken_connection when the connection is lost (what the server
// did with the rest is unknown), pqxx::unique_violation on a duplicate key, pqxx::sql_error
// otherwise (the server skipped every later statement). Afterwards the connection is out of
// pipeline mode; a transaction block the statements opened stays open (aborted after an error):
// the caller ends it. All output is written before any result is read: fine while results stay
// small (a few rows), as the server never blocks on sending them.
void run_pipeline(pg_conn* conn, const std::vector<PipelineStatement>& statements,
                  std::vector<PipelineReply>& replies);

// Rolls back the transaction block the connection is in, if any (no-op when idle or lost).
void rollback_open(pg_conn* conn) noexcept;

}  // namespace quizflow::egress
