// The SQL of the batch transaction (egress/batch_writer.cpp), in one place so that the DB-path
// benchmark profiles exactly the statements the writer runs.
#pragma once

namespace quizflow::egress::batch_sql {

// A statement prepared once per session under `name`.
struct Prepared {
  const char* name;
  const char* sql;
};

// Binary COPY straight into the tables, for many rows the engine knows to be new: cheaper per
// row than the array statements below (multi-row heap inserts), but two round trips each and
// not allowed in a pipeline. The field order is the column order listed here (as in the array
// statements); a stored row fails the COPY with unique_violation (23505).
inline constexpr const char* kCopyEvents =
    "COPY answer_events (quiz_id, event_id, user_id, question_id, option_id, answered_at, "
    "elapsed_ms) FROM STDIN (FORMAT binary)";
inline constexpr const char* kCopyCounted =
    "COPY counted_answers (quiz_id, user_id, question_id, event_id, answered_at, option_id, "
    "correct, points, elapsed_ms) FROM STDIN (FORMAT binary)";
// Import (replay --from file:): events copied into a scratch table, then added to the log
// unless stored.
inline constexpr const char* kCreateImportEvents =
    "CREATE TEMP TABLE qf_import_events (LIKE answer_events INCLUDING DEFAULTS) ON COMMIT DROP";
inline constexpr const char* kCopyImportEvents =
    "COPY qf_import_events (quiz_id, event_id, user_id, question_id, option_id, answered_at, "
    "elapsed_ms) FROM STDIN (FORMAT binary)";
inline constexpr const char* kInsertImportEvents =
    "INSERT INTO answer_events SELECT * FROM qf_import_events ORDER BY quiz_id, event_id "
    "ON CONFLICT (quiz_id, event_id) DO NOTHING";
// Of those, how many the log does not hold (a finalized quiz takes none: reported).
inline constexpr const char* kCountNewImportEvents =
    "SELECT count(*) FROM qf_import_events i WHERE NOT EXISTS (SELECT 1 FROM answer_events e "
    "WHERE e.quiz_id = i.quiz_id AND e.event_id = i.event_id)";
inline constexpr const char* kCopyStandings =
    "COPY standings (quiz_id, user_id, score, correct, time_ms) FROM STDIN (FORMAT binary)";

// Prepared once per session (PgBatchWriter): each takes a whole batch as binary arrays, one per
// column, so that the transaction's statements can be pipelined (libpq pipeline mode: one round
// trip for all of them). Rows come sorted by their key: concurrent writers take index locks in
// one order, and a quiz's rows fall in one narrow key range.

// Appends the batch's events to the event log as if all were new (no index probe per event, no
// ids sent back): a stored one fails it with unique_violation (23505).
inline constexpr Prepared kInsertEvents{"qf_insert_events", R"SQL(
INSERT INTO answer_events (quiz_id, event_id, user_id, question_id, option_id, answered_at,
                           elapsed_ms)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::integer[], $5::integer[],
                     $6::timestamptz[], $7::integer[]))SQL"};

// The same, skipping stored events: for a batch that holds some (a client's retry); returns the
// (quiz_id, event_id) of those that were new.
inline constexpr Prepared kInsertNewEvents{"qf_insert_new_events", R"SQL(
INSERT INTO answer_events (quiz_id, event_id, user_id, question_id, option_id, answered_at,
                           elapsed_ms)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::integer[], $5::integer[],
                     $6::timestamptz[], $7::integer[])
ON CONFLICT (quiz_id, event_id) DO NOTHING
RETURNING quiz_id, event_id)SQL"};

// The consumer's settled offsets stored with the batch (insert only; see migration 6).
inline constexpr Prepared kInsertOffsets{"qf_insert_offsets", R"SQL(
INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::bigint[]))SQL"};

// Counted answers and standings are written as absolute values by upsert: correct whatever is
// stored. Each returns how many rows it inserted (xmax = 0: not an update), which the writer
// compares with what the engine expected (a difference means stored rows differ from memory).
inline constexpr Prepared kUpsertCounted{"qf_upsert_counted", R"SQL(
WITH w AS (
  INSERT INTO counted_answers AS c (quiz_id, user_id, question_id, event_id, answered_at,
                                    option_id, correct, points, elapsed_ms)
  SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::text[],
                       $5::timestamptz[], $6::integer[], $7::boolean[], $8::bigint[],
                       $9::integer[])
  ON CONFLICT (quiz_id, user_id, question_id) DO UPDATE SET
    event_id = EXCLUDED.event_id, answered_at = EXCLUDED.answered_at,
    option_id = EXCLUDED.option_id, correct = EXCLUDED.correct, points = EXCLUDED.points,
    elapsed_ms = EXCLUDED.elapsed_ms
  RETURNING c.xmax = 0 AS inserted)
SELECT count(*) FILTER (WHERE inserted) FROM w)SQL"};

inline constexpr Prepared kUpsertStandings{"qf_upsert_standings", R"SQL(
WITH w AS (
  INSERT INTO standings AS s (quiz_id, user_id, score, correct, time_ms)
  SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::integer[], $5::bigint[])
  ON CONFLICT (quiz_id, user_id) DO UPDATE SET
    score = EXCLUDED.score, correct = EXCLUDED.correct, time_ms = EXCLUDED.time_ms,
    updated_at = now()
  RETURNING s.xmax = 0 AS inserted)
SELECT count(*) FILTER (WHERE inserted) FROM w)SQL"};

// Records the transaction: proves one transaction per batch and resolves in-doubt commits.
// $2 is the quiz when the transaction holds one quiz's batch (else NULL), $3 every quiz in it.
// Returns the transaction's id: should COMMIT's reply be lost, txid_status() tells its outcome.
inline constexpr Prepared kInsertBatch{
    "qf_insert_batch",
    "INSERT INTO batches (batch_key, quiz_id, quiz_ids, events) "
    "VALUES ($1, NULLIF($2::bigint, 0), $3::bigint[], $4) RETURNING txid_current()"};

// The same, with the transaction's notifications stored as one outbox row ($5 messages, $6 the
// payload): returns the txid and the row's id.
inline constexpr Prepared kInsertBatchWithOutbox{"qf_insert_batch_outbox", R"SQL(
WITH b AS (INSERT INTO batches (batch_key, quiz_id, quiz_ids, events)
           VALUES ($1, NULLIF($2::bigint, 0), $3::bigint[], $4) RETURNING txid_current() AS txid),
     o AS (INSERT INTO outbox (messages, payload) VALUES ($5, $6) RETURNING id)
SELECT b.txid, o.id FROM b, o)SQL"};

// Holds the transaction's quizzes against a replay and checks the engine's versions of their
// standings (migration 5's qf_hold_quizzes; SQLSTATE QF001: stale). Right after BEGIN, before
// any row is written, so that a replay waiting for the quizzes holds no row this one needs.
inline constexpr Prepared kHoldQuizzes{"qf_hold_quizzes",
                                       "SELECT qf_hold_quizzes($1::bigint[], $2::bigint[])"};

// Every statement above, prepared when the writer first uses a session.
inline constexpr Prepared kBatchStatements[] = {
    kHoldQuizzes,     kInsertEvents, kInsertNewEvents,       kUpsertCounted,
    kUpsertStandings, kInsertBatch,  kInsertBatchWithOutbox, kInsertOffsets};

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
