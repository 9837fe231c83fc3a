#include "egress/migrations.h"

namespace quizflow::egress {

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> m = {
      {1, "initial schema", R"SQL(
CREATE TABLE quizzes (
  quiz_id     bigint PRIMARY KEY CHECK (quiz_id > 0),
  title       text NOT NULL,
  opens_at    timestamptz NOT NULL,
  closes_at   timestamptz NOT NULL CHECK (closes_at > opens_at),
  definition  jsonb NOT NULL,           -- canonical definition, as encode_quiz() writes it
  state       text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'finalized')),
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE questions (
  quiz_id        bigint NOT NULL REFERENCES quizzes (quiz_id),
  question_id    integer NOT NULL CHECK (question_id > 0),
  option_count   integer NOT NULL CHECK (option_count BETWEEN 2 AND 10),
  correct_option integer NOT NULL CHECK (correct_option >= 0 AND correct_option < option_count),
  points         integer NOT NULL CHECK (points BETWEEN 1 AND 100000),
  time_limit_ms  integer NOT NULL CHECK (time_limit_ms BETWEEN 1000 AND 600000),
  PRIMARY KEY (quiz_id, question_id)
);

-- Every accepted answer event, superseded ones too: the log that replay rebuilds from.
-- event_id compares bytewise (COLLATE "C"), as the engine does.
CREATE TABLE answer_events (
  event_id    text COLLATE "C" PRIMARY KEY,
  quiz_id     bigint NOT NULL,
  user_id     bigint NOT NULL,
  question_id integer NOT NULL,
  option_id   integer NOT NULL,
  answered_at timestamptz NOT NULL,
  elapsed_ms  integer NOT NULL
);

-- The answer that counts per (quiz, user, question): smallest (answered_at, event_id).
CREATE TABLE counted_answers (
  quiz_id     bigint NOT NULL,
  user_id     bigint NOT NULL,
  question_id integer NOT NULL,
  event_id    text COLLATE "C" NOT NULL,
  answered_at timestamptz NOT NULL,
  option_id   integer NOT NULL,
  correct     boolean NOT NULL,
  points      bigint NOT NULL,
  elapsed_ms  integer NOT NULL,
  PRIMARY KEY (quiz_id, user_id, question_id)
);

-- Standings per quiz and player, written as absolute values by each batch.
CREATE TABLE standings (
  quiz_id    bigint NOT NULL,
  user_id    bigint NOT NULL,
  score      bigint NOT NULL,
  correct    integer NOT NULL,
  time_ms    bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (quiz_id, user_id)
);
-- Leaderboard pages in rank order read this index in order (no sort).
CREATE INDEX standings_rank ON standings (quiz_id, score DESC, correct DESC, time_ms, user_id);

-- One row per committed quiz batch: proves one transaction per batch and resolves in-doubt
-- commits (was this batch_key committed?).
CREATE TABLE batches (
  batch_key    text PRIMARY KEY,
  quiz_id      bigint NOT NULL,
  events       integer NOT NULL,
  committed_at timestamptz NOT NULL DEFAULT now()
);
)SQL"},
      {2, "multi-quiz batch transactions; no rank index on standings", R"SQL(
-- Several small quizzes' batches may share one transaction: a batch row lists its quizzes
-- (quiz_id stays set when the transaction held one quiz's batch).
ALTER TABLE batches ALTER COLUMN quiz_id DROP NOT NULL;
ALTER TABLE batches ADD COLUMN quiz_ids bigint[] NOT NULL DEFAULT '{}';

-- Leaderboards are served from the engine's memory. The rank index made every standings write
-- a non-HOT update with two index insertions; a SQL reader sorts one quiz's rows instead.
DROP INDEX IF EXISTS standings_rank;
-- Room on each page for HOT updates of the rewritten standings and counted-answer rows.
ALTER TABLE standings SET (fillfactor = 80);
ALTER TABLE counted_answers SET (fillfactor = 90);
)SQL"},
      {3, "quiz lifecycle: final standings, rewards, the outbox", R"SQL(
-- closed_at: a close was requested (state 'closed'); finalized_at / players: set by the
-- finalization transaction, which locks the quiz row first (one finalization per quiz).
ALTER TABLE quizzes ADD COLUMN closed_at timestamptz, ADD COLUMN finalized_at timestamptz,
                    ADD COLUMN players integer;

-- The standings frozen at finalization, in rank order (leaderboards of finalized quizzes are
-- read from here; the engine forgets them).
CREATE TABLE final_standings (
  quiz_id bigint NOT NULL,
  rank    integer NOT NULL,
  user_id bigint NOT NULL,
  score   bigint NOT NULL,
  correct integer NOT NULL,
  time_ms bigint NOT NULL,
  PRIMARY KEY (quiz_id, rank),
  UNIQUE (quiz_id, user_id)
);

-- Exactly once per (quiz, user), by this key.
CREATE TABLE rewards (
  quiz_id    bigint NOT NULL,
  user_id    bigint NOT NULL,
  rank       integer NOT NULL,
  reward     text NOT NULL,
  granted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (quiz_id, user_id)
);

-- Transactional outbox: the notifications of one transaction (one line "key<TAB>value" per
-- message), written with the change that caused them and deleted once all were delivered.
-- lz4: a batch's payload is about 1 MB of JSON lines; pglz (the default) spent ~10% of the
-- pipeline's throughput compressing it.
CREATE TABLE outbox (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  messages   integer NOT NULL,
  payload    text COMPRESSION lz4 NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
)SQL"},
      {4, "event identity scoped to the quiz", R"SQL(
-- Spec §3: an event_id is unique within its quiz; the same (quiz_id, event_id) again is a
-- duplicate. Keying the event log by (quiz_id, event_id) also keeps a quiz's batch in one narrow
-- key range however large the log grows. (Rebuilds the index: on a large log this migration
-- takes a while, once.)
ALTER TABLE answer_events DROP CONSTRAINT answer_events_pkey;
ALTER TABLE answer_events ADD PRIMARY KEY (quiz_id, event_id);
)SQL"},
      {5, "standings versions: replay rebuilds them while engines run", R"SQL(
-- Raised by each replay that rebuilt a quiz's counted answers and standings: an engine holding
-- an older version in memory must reload the quiz before it writes again.
ALTER TABLE quizzes ADD COLUMN standings_version bigint NOT NULL DEFAULT 0;

-- The first statement of every batch transaction: holds the quizzes against a replay (a shared
-- advisory lock per quiz, until the transaction ends; a replay takes it exclusively) and fails
-- with SQLSTATE QF001 when a quiz's standings are newer than the version the engine holds.
CREATE FUNCTION qf_hold_quizzes(ids bigint[], versions bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  stale bigint;
BEGIN
  PERFORM pg_advisory_xact_lock_shared(id) FROM unnest(ids) AS id ORDER BY id;
  SELECT q.quiz_id INTO stale
  FROM unnest(ids, versions) AS v(id, version) JOIN quizzes q ON q.quiz_id = v.id
  WHERE q.standings_version <> v.version LIMIT 1;
  IF stale IS NOT NULL THEN
    RAISE EXCEPTION 'the standings of quiz % were rebuilt by a replay', stale
      USING ERRCODE = 'QF001';
  END IF;
END $$;
)SQL"},
      {6, "kafka consumer offsets stored with the batches", R"SQL(
-- Every batch transaction of an engine consuming quiz.answers inserts its consumer's settled
-- offsets (insert only: concurrent batches take no row lock); the highest per partition is
-- where a newly assigned consumer starts. Lower rows are pruned now and then.
CREATE TABLE consumer_offsets (
  group_id    text NOT NULL,
  topic       text NOT NULL,
  partition   integer NOT NULL,
  next_offset bigint NOT NULL
);
CREATE INDEX consumer_offsets_top ON consumer_offsets (group_id, topic, partition, next_offset);
)SQL"},
  };
  return m;
}

}  // namespace quizflow::egress
