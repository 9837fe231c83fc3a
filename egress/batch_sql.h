// The SQL of the per-quiz-batch transaction (egress/batch_writer.cpp), in one place so that the
// DB-path benchmark profiles exactly the statements the writer runs.
#pragma once

namespace quizflow::egress::batch_sql {

// Per-connection staging tables, emptied at every commit.
inline constexpr const char* kCreateStaging = R"SQL(
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
)SQL";

// Appends the staged events to the event log; returns the event_ids that were new.
inline constexpr const char* kInsertEvents = R"SQL(
INSERT INTO answer_events (event_id, quiz_id, user_id, question_id, option_id, answered_at,
                           elapsed_ms)
SELECT event_id, quiz_id, user_id, question_id, option_id, answered_at, elapsed_ms
FROM qf_stage_events ORDER BY event_id
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id)SQL";

// Writes the counted answers the engine derived (absolute rows).
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

// Writes the touched players' standings (absolute rows).
inline constexpr const char* kUpsertStandings = R"SQL(
INSERT INTO standings AS s (quiz_id, user_id, score, correct, time_ms)
SELECT quiz_id, user_id, score, correct, time_ms
FROM qf_stage_standings ORDER BY quiz_id, user_id
ON CONFLICT (quiz_id, user_id) DO UPDATE SET
  score = EXCLUDED.score, correct = EXCLUDED.correct, time_ms = EXCLUDED.time_ms,
  updated_at = now())SQL";

// Records the batch: proves one transaction per batch and resolves in-doubt commits.
inline constexpr const char* kInsertBatch =
    "INSERT INTO batches (batch_key, quiz_id, events) VALUES ($1, $2, $3)";

}  // namespace quizflow::egress::batch_sql
