// The SQL of the batch transaction (egress/batch_writer.cpp), in one place so that the DB-path
// benchmark profiles exactly the statements the writer runs.
#pragma once

namespace quizflow::egress::batch_sql {

// Per-connection staging tables, emptied at every commit.
inline constexpr const char* kCreateStaging = R"SQL(
CREATE TEMP TABLE IF NOT EXISTS qf_stage_events (
  quiz_id bigint, event_id text COLLATE "C", user_id bigint, question_id integer,
  option_id integer, answered_at timestamptz, elapsed_ms integer) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS qf_stage_counted (
  quiz_id bigint, user_id bigint, question_id integer, event_id text COLLATE "C",
  answered_at timestamptz, option_id integer, correct boolean, points bigint,
  elapsed_ms integer) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS qf_stage_standings (
  quiz_id bigint, user_id bigint, score bigint, correct integer, time_ms bigint)
  ON COMMIT DELETE ROWS;
)SQL";

// Binary COPY targets. The field order is the column order listed here.
// The events go straight into the event log when none of them is stored yet (the common case;
// in a savepoint: a stored one fails it with unique_violation, and they are staged instead).
// The rows come sorted by event_id, so concurrent writers take index locks in the same order.
inline constexpr const char* kCopyEventsNew =
    "COPY answer_events (quiz_id, event_id, user_id, question_id, option_id, answered_at, "
    "elapsed_ms) FROM STDIN (FORMAT binary)";
inline constexpr const char* kCopyEventsStage =
    "COPY qf_stage_events (quiz_id, event_id, user_id, question_id, option_id, answered_at, "
    "elapsed_ms) FROM STDIN (FORMAT binary)";
inline constexpr const char* kCopyCountedNew =
    "COPY counted_answers (quiz_id, user_id, question_id, event_id, answered_at, option_id, "
    "correct, points, elapsed_ms) FROM STDIN (FORMAT binary)";
inline constexpr const char* kCopyCountedStage =
    "COPY qf_stage_counted (quiz_id, user_id, question_id, event_id, answered_at, option_id, "
    "correct, points, elapsed_ms) FROM STDIN (FORMAT binary)";
inline constexpr const char* kCopyStandingsNew =
    "COPY standings (quiz_id, user_id, score, correct, time_ms) FROM STDIN (FORMAT binary)";
inline constexpr const char* kCopyStandingsStage =
    "COPY qf_stage_standings (quiz_id, user_id, score, correct, time_ms) FROM STDIN "
    "(FORMAT binary)";

// Appends the staged events to the event log, skipping stored ones; returns the (quiz_id,
// event_id) of those that were new.
inline constexpr const char* kInsertEvents = R"SQL(
INSERT INTO answer_events (quiz_id, event_id, user_id, question_id, option_id, answered_at,
                           elapsed_ms)
SELECT quiz_id, event_id, user_id, question_id, option_id, answered_at, elapsed_ms
FROM qf_stage_events ORDER BY quiz_id, event_id
ON CONFLICT (quiz_id, event_id) DO NOTHING
RETURNING quiz_id, event_id)SQL";

// Fast path: the engine knows which counted answers and standings rows exist (it holds them in
// memory), so new rows are copied straight into their tables and only the staged rows that
// replace stored ones are updated. Every staged row must match exactly one stored row.
inline constexpr const char* kUpdateCounted = R"SQL(
UPDATE counted_answers AS c SET
  event_id = s.event_id, answered_at = s.answered_at, option_id = s.option_id,
  correct = s.correct, points = s.points, elapsed_ms = s.elapsed_ms
FROM qf_stage_counted AS s
WHERE c.quiz_id = s.quiz_id AND c.user_id = s.user_id AND c.question_id = s.question_id)SQL";

inline constexpr const char* kUpdateStandings = R"SQL(
UPDATE standings AS t SET
  score = s.score, correct = s.correct, time_ms = s.time_ms, updated_at = now()
FROM qf_stage_standings AS s
WHERE t.quiz_id = s.quiz_id AND t.user_id = s.user_id)SQL";

// Safe path, used when the fast path found the stored rows other than the engine expected:
// every staged row is upserted.
inline constexpr const char* kUpsertCounted = R"SQL(
INSERT INTO counted_answers AS c (quiz_id, user_id, question_id, event_id, answered_at,
                                  option_id, correct, points, elapsed_ms)
SELECT quiz_id, user_id, question_id, event_id, answered_at, option_id, correct, points,
       elapsed_ms
FROM qf_stage_counted ORDER BY quiz_id, user_id, question_id
ON CONFLICT (quiz_id, user_id, question_id) DO UPDATE SET
  event_id = EXCLUDED.event_id, answered_at = EXCLUDED.answered_at,
  option_id = EXCLUDED.option_id, correct = EXCLUDED.correct, points = EXCLUDED.points,
  elapsed_ms = EXCLUDED.elapsed_ms)SQL";

inline constexpr const char* kUpsertStandings = R"SQL(
INSERT INTO standings AS s (quiz_id, user_id, score, correct, time_ms)
SELECT quiz_id, user_id, score, correct, time_ms
FROM qf_stage_standings ORDER BY quiz_id, user_id
ON CONFLICT (quiz_id, user_id) DO UPDATE SET
  score = EXCLUDED.score, correct = EXCLUDED.correct, time_ms = EXCLUDED.time_ms,
  updated_at = now())SQL";

// Records the transaction: proves one transaction per batch and resolves in-doubt commits.
// $2 is the quiz when the transaction holds one quiz's batch (else NULL), $3 every quiz in it.
// Returns the transaction's id: should COMMIT's reply be lost, txid_status() tells its outcome.
inline constexpr const char* kInsertBatch =
    "INSERT INTO batches (batch_key, quiz_id, quiz_ids, events) "
    "VALUES ($1, NULLIF($2::bigint, 0), $3::bigint[], $4) RETURNING txid_current()";

// The same, with the transaction's notifications stored as one outbox row ($5 messages, $6 the
// payload): returns the txid and the row's id.
inline constexpr const char* kInsertBatchWithOutbox = R"SQL(
WITH b AS (INSERT INTO batches (batch_key, quiz_id, quiz_ids, events)
           VALUES ($1, NULLIF($2::bigint, 0), $3::bigint[], $4) RETURNING txid_current() AS txid),
     o AS (INSERT INTO outbox (messages, payload) VALUES ($5, $6) RETURNING id)
SELECT b.txid, o.id FROM b, o)SQL";

// ---- finalization (PgBatchWriter::finalize) ----

// Locks the quiz row: one finalization at a time per quiz, across engines.
inline constexpr const char* kLockQuiz = "SELECT state FROM quizzes WHERE quiz_id = $1 FOR UPDATE";
inline constexpr const char* kQuizStandings =
    "SELECT user_id, score, correct, time_ms FROM standings WHERE quiz_id = $1";
inline constexpr const char* kCopyFinalStandings =
    "COPY final_standings (quiz_id, rank, user_id, score, correct, time_ms) FROM STDIN "
    "(FORMAT binary)";
inline constexpr const char* kCopyRewards =
    "COPY rewards (quiz_id, user_id, rank, reward) FROM STDIN (FORMAT binary)";
inline constexpr const char* kInsertOutbox =
    "INSERT INTO outbox (messages, payload) VALUES ($1, $2) RETURNING id";
inline constexpr const char* kMarkFinalized =
    "UPDATE quizzes SET state = 'finalized', finalized_at = now(), players = $2 "
    "WHERE quiz_id = $1";

}  // namespace quizflow::egress::batch_sql
