// The batch writer against the real PostgreSQL: binary array parameters keep every value exact,
// stored events are told apart from new ones, stored rows that differ from the engine's
// expectation are overwritten and counted, a lost session is replaced, and one transaction may
// hold several quizzes.
#include "egress/batch_writer.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "egress/pg_store.h"
#include "support/test_db.h"
#include "unit/test_util.h"

namespace quizflow::testing {
namespace {

using egress::PgBatchWriter;
using egress::PgPool;
using egress::PoolOptions;

class BatchWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(egress::PgStore(PoolOptions{db.url()}).migrate().ok());
    pool = std::make_shared<PgPool>(PoolOptions{db.url(), 1, 0, 5000, 30000});
    writer = std::make_unique<PgBatchWriter>(pool, metrics);
  }

  static AnswerEvent event(const std::string& id, int64_t quiz, int64_t user, int32_t question,
                           int64_t answered_at_ms) {
    AnswerEvent e;
    e.event_id = id;
    e.quiz_id = quiz;
    e.user_id = user;
    e.question_id = question;
    e.option_id = 3;
    e.answered_at_ms = answered_at_ms;
    e.elapsed_ms = 1234;
    e.correct = true;
    e.points = 950;
    return e;
  }

  static CountedRow counted_of(const AnswerEvent& e, bool replaces) {
    return CountedRow{e.quiz_id,  e.user_id,        e.question_id,
                      e.event_id, e.answered_at_ms, static_cast<int32_t>(e.option_id),
                      e.correct,  e.points,         e.elapsed_ms,
                      replaces};
  }

  // Commits `events` with the given derived rows (whatever the insert flags say).
  Result<Committed> commit(const std::vector<int64_t>& quizzes, const std::string& key,
                           const std::vector<AnswerEvent>& events, const DerivedRows& rows) {
    std::vector<const AnswerEvent*> ptrs;
    for (const auto& e : events) ptrs.push_back(&e);
    return writer->commit(BatchTxn{quizzes, key, ptrs},
                          [&](const std::vector<bool>&) { return rows; });
  }

  TestDatabase db;
  std::shared_ptr<PgPool> pool;
  BatchMetrics metrics;  // what the writer counts
  std::unique_ptr<PgBatchWriter> writer;
};

TEST_F(BatchWriterTest, BinaryParametersKeepEveryValueExact) {
  // Event ids with bytes that text COPY would have to escape, and a millisecond timestamp.
  const std::vector<AnswerEvent> events{event("tab\there", 7, 1, 1, 1795000000123),
                                        event("back\\slash\nnew", 7, 2, 1, 1),
                                        event("ünïcödé-✓", 7, 3, 2, 1795000000999)};
  const auto out =
      commit({7}, "exact-1", events,
             DerivedRows{{counted_of(events[0], false)}, {StandingRow{7, 1, 950, 1, 1234, false}}});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ(out->inserted, (std::vector<bool>{true, true, true}));
  EXPECT_EQ(db.query("SELECT event_id, quiz_id, user_id, question_id, option_id, "
                     "(extract(epoch FROM answered_at) * 1000)::bigint, elapsed_ms "
                     "FROM answer_events ORDER BY user_id"),
            (std::vector<std::vector<std::string>>{
                {"tab\there", "7", "1", "1", "3", "1795000000123", "1234"},
                {"back\\slash\nnew", "7", "2", "1", "3", "1", "1234"},
                {"ünïcödé-✓", "7", "3", "2", "3", "1795000000999", "1234"}}));
  EXPECT_EQ(db.query("SELECT quiz_id, user_id, question_id, event_id, "
                     "(extract(epoch FROM answered_at) * 1000)::bigint, option_id, correct, "
                     "points, elapsed_ms FROM counted_answers"),
            (std::vector<std::vector<std::string>>{
                {"7", "1", "1", "tab\there", "1795000000123", "3", "t", "950", "1234"}}));
  EXPECT_EQ(db.query("SELECT quiz_id, user_id, score, correct, time_ms FROM standings"),
            (std::vector<std::vector<std::string>>{{"7", "1", "950", "1", "1234"}}));
  EXPECT_EQ(db.query("SELECT quiz_id, quiz_ids::text, events FROM batches"),
            (std::vector<std::vector<std::string>>{{"7", "{7}", "3"}}));
  EXPECT_EQ(metrics.state_mismatches.load(), 0);

  // The same ids again are duplicates; nothing else is written.
  const auto again = commit({7}, "exact-2", events, DerivedRows{});
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_EQ(again->inserted, (std::vector<bool>{false, false, false}));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events"), 3);
}

TEST_F(BatchWriterTest, StoredAndNewEventsInOneBatchAreToldApart) {
  const AnswerEvent a = event("s1", 11, 1, 1, 1000), b = event("s2", 11, 2, 1, 1000);
  ASSERT_TRUE(commit({11}, "sn-1", {a, b}, DerivedRows{}).ok());
  // New, stored, new, stored: the event log's primary key stops the plain insert, and the
  // ON CONFLICT insert says which ones were new.
  const AnswerEvent c = event("s0", 11, 3, 1, 1000), d = event("s9", 11, 4, 1, 1000);
  const auto out = commit({11}, "sn-2", {c, b, d, a}, DerivedRows{});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ(out->inserted, (std::vector<bool>{true, false, true, false}));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events WHERE quiz_id = 11"), 4);
  EXPECT_EQ(metrics.state_mismatches.load(), 0);
}

// Event ids are unique per quiz (spec §3): a stored id in another quiz does not make an event a
// duplicate, in the plain insert or in the one that tells stored from new.
TEST_F(BatchWriterTest, EventIdsAreScopedToTheirQuiz) {
  const AnswerEvent a = event("same", 21, 1, 1, 1000);
  ASSERT_TRUE(commit({21}, "sc-1", {a}, DerivedRows{}).ok());
  const AnswerEvent other_quiz = event("same", 22, 1, 1, 1000);
  auto out = commit({22}, "sc-2", {other_quiz}, DerivedRows{});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ(out->inserted, std::vector<bool>{true});
  // Both again, with a new one: only the new one is new.
  const AnswerEvent fresh = event("same", 23, 1, 1, 1000);
  out = commit({21, 22, 23}, "sc-3", {other_quiz, fresh, a}, DerivedRows{});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ(out->inserted, (std::vector<bool>{false, true, false}));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events WHERE event_id = 'same'"), 3);
}

TEST_F(BatchWriterTest, ReplacingRowsOverwritesThem) {
  const AnswerEvent first = event("r1", 8, 1, 1, 2000);
  ASSERT_TRUE(commit({8}, "rep-1", {first},
                     DerivedRows{{counted_of(first, false)}, {StandingRow{8, 1, 950, 1, 1234}}})
                  .ok());
  AnswerEvent earlier = event("r0", 8, 1, 1, 1000);
  earlier.points = 10;
  earlier.correct = false;
  const auto out =
      commit({8}, "rep-2", {earlier},
             DerivedRows{{counted_of(earlier, true)}, {StandingRow{8, 1, 10, 0, 1234, true}}});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ(metrics.state_mismatches.load(), 0);
  EXPECT_EQ(db.query("SELECT event_id, points, correct FROM counted_answers"),
            (std::vector<std::vector<std::string>>{{"r0", "10", "f"}}));
  EXPECT_EQ(db.query("SELECT score, correct FROM standings"),
            (std::vector<std::vector<std::string>>{{"10", "0"}}));
}

TEST_F(BatchWriterTest, ALostConnectionIsReplacedWithItsPreparedStatements) {
  const AnswerEvent first = event("k1", 12, 1, 1, 2000);
  ASSERT_TRUE(commit({12}, "lost-1", {first},
                     DerivedRows{{counted_of(first, false)}, {StandingRow{12, 1, 950, 1, 1234}}})
                  .ok());
  // The writer's idle connection dies, with the statements prepared in its session.
  db.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
      "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  AnswerEvent earlier = event("k0", 12, 1, 1, 1000);
  earlier.points = 10;
  const auto out =
      commit({12}, "lost-2", {earlier},
             DerivedRows{{counted_of(earlier, true)}, {StandingRow{12, 1, 10, 1, 1234, true}}});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ(out->inserted, std::vector<bool>{true});
  EXPECT_EQ(metrics.state_mismatches.load(), 0);
  EXPECT_EQ(db.query("SELECT event_id, points FROM counted_answers WHERE quiz_id = 12"),
            (std::vector<std::vector<std::string>>{{"k0", "10"}}));
  EXPECT_GE(pool->stats().discarded, 1);
  EXPECT_EQ(metrics.retries.load(), 1) << "the dead connection's attempt was not counted";
}

TEST_F(BatchWriterTest, StoredRowsUnlikeTheEnginesStateAreOverwrittenAndCounted) {
  const AnswerEvent a = event("m1", 9, 1, 1, 1000);
  ASSERT_TRUE(commit({9}, "mis-1", {a},
                     DerivedRows{{counted_of(a, false)}, {StandingRow{9, 1, 950, 1, 1234}}})
                  .ok());
  // Claims the rows are new although they are stored.
  const AnswerEvent b = event("m2", 9, 1, 1, 500);
  auto out =
      commit({9}, "mis-2", {b}, DerivedRows{{counted_of(b, false)}, {StandingRow{9, 1, 7, 0, 8}}});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ(metrics.state_mismatches.load(), 1);
  EXPECT_EQ(out->inserted, std::vector<bool>{true});
  EXPECT_EQ(db.query("SELECT event_id FROM counted_answers WHERE quiz_id = 9"),
            (std::vector<std::vector<std::string>>{{"m2"}}));
  EXPECT_EQ(db.query("SELECT score, correct, time_ms FROM standings WHERE quiz_id = 9"),
            (std::vector<std::vector<std::string>>{{"7", "0", "8"}}));
  // Claims rows are stored that are not.
  const AnswerEvent c = event("m3", 9, 2, 1, 500);
  out = commit({9}, "mis-3", {c},
               DerivedRows{{counted_of(c, true)}, {StandingRow{9, 2, 950, 1, 1234, true}}});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ(metrics.state_mismatches.load(), 2);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM counted_answers WHERE quiz_id = 9 AND user_id = 2"), 1);
  EXPECT_EQ(db.scalar("SELECT score FROM standings WHERE quiz_id = 9 AND user_id = 2"), 950);
  // One transaction each: three batch rows, three events.
  EXPECT_EQ(db.scalar("SELECT count(*) FROM batches"), 3);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events"), 3);
}

// Many new rows of a kind go by binary COPY instead of array parameters: the same values land.
// Should one of them be stored already, the transaction is redone with upserts only.
TEST_F(BatchWriterTest, ManyNewRowsGoByCopyAndAStoredOneRedoesWithUpserts) {
  std::vector<AnswerEvent> events;
  DerivedRows rows;
  for (int u = 1; u <= 300; ++u) {
    events.push_back(event(test::cat("c", u), 40, u, 1, 1000 + u));
    rows.counted.push_back(counted_of(events.back(), false));
    rows.standings.push_back(StandingRow{40, u, 950, 1, u});
  }
  auto out = commit({40}, "copy-1", events, rows);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ(out->inserted, std::vector<bool>(300, true));
  EXPECT_EQ(metrics.state_mismatches.load(), 0);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events WHERE quiz_id = 40"), 300);
  EXPECT_EQ(db.scalar("SELECT sum(time_ms) FROM standings WHERE quiz_id = 40"), 300 * 301 / 2);
  EXPECT_EQ(db.query("SELECT event_id, (extract(epoch FROM answered_at) * 1000)::bigint "
                     "FROM counted_answers WHERE quiz_id = 40 AND user_id = 7"),
            (std::vector<std::vector<std::string>>{{"c7", "1007"}}));
  // New events, but counted answers and standings claimed new that are stored (question 1
  // again): the COPY hits their keys; the upserts then write the engine's values.
  std::vector<AnswerEvent> again;
  DerivedRows rows2;
  for (int u = 1; u <= 300; ++u) {
    again.push_back(event(test::cat("d", u), 40, u, 1, 500));
    rows2.counted.push_back(counted_of(again.back(), false));
    rows2.standings.push_back(StandingRow{40, u, 7, 0, 8});
  }
  out = commit({40}, "copy-2", again, rows2);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ(metrics.state_mismatches.load(), 1);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events WHERE quiz_id = 40"), 600);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM counted_answers WHERE quiz_id = 40 AND "
                      "event_id LIKE 'd%'"),
            300);
  EXPECT_EQ(db.scalar("SELECT sum(score) FROM standings WHERE quiz_id = 40"), 7 * 300);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM batches"), 2);
}

// The steps of each transaction are timed into the metrics: the timeline in /monitoring/stats.
TEST_F(BatchWriterTest, EveryTransactionTimesItsSteps) {
  auto runs = [&](const char* step) {
    for (size_t i = 0; i < kWriterSteps.size(); ++i)
      if (std::string(kWriterSteps[i]) == step) return metrics.steps.runs[i].load();
    ADD_FAILURE() << "no step " << step;
    return int64_t{-1};
  };
  const AnswerEvent a = event("t1", 50, 1, 1, 1000);
  ASSERT_TRUE(commit({50}, "steps-1", {a},
                     DerivedRows{{counted_of(a, false)}, {StandingRow{50, 1, 950, 1, 1234}}})
                  .ok());
  EXPECT_EQ(runs("encode_events"), 1);
  EXPECT_EQ(runs("derive"), 1);
  EXPECT_EQ(runs("round_trip"), 1);
  EXPECT_EQ(runs("copy_events"), 0) << "one event goes as an array parameter";
  EXPECT_EQ(runs("insert_new_events"), 0);
  // The same event again: the stored-events path runs too.
  ASSERT_TRUE(commit({50}, "steps-2", {a}, DerivedRows{}).ok());
  EXPECT_EQ(runs("insert_new_events"), 1);
  EXPECT_EQ(runs("round_trip"), 2) << "only completed steps are timed (not the failed pass)";
}

TEST_F(BatchWriterTest, SeveralQuizzesInOneTransaction) {
  const std::vector<AnswerEvent> events{event("q1", 21, 1, 1, 1000), event("q2", 22, 1, 1, 1000),
                                        event("q3", 23, 5, 2, 1000)};
  DerivedRows rows;
  for (const auto& e : events) {
    rows.counted.push_back(counted_of(e, false));
    rows.standings.push_back(StandingRow{e.quiz_id, e.user_id, e.points, 1, e.elapsed_ms});
  }
  const auto out = commit({21, 22, 23}, "multi-1", events, rows);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ(db.query("SELECT quiz_id, quiz_ids::text, events FROM batches"),
            (std::vector<std::vector<std::string>>{{"", "{21,22,23}", "3"}}));
  EXPECT_EQ(db.scalar("SELECT count(DISTINCT quiz_id) FROM standings"), 3);
}

TEST_F(BatchWriterTest, AFailedStatementStoresNothing) {
  // A standing row for one player twice in one transaction: the upsert hits "cannot affect row
  // a second time", and the transaction fails as a whole.
  const AnswerEvent e = event("f1", 30, 1, 1, 1000);
  const auto out = commit({30}, "fail-1", {e},
                          DerivedRows{{counted_of(e, false)},
                                      {StandingRow{30, 1, 1, 1, 1}, StandingRow{30, 1, 2, 2, 2}}});
  EXPECT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::internal);
  EXPECT_FALSE(out.status().message().empty());
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events"), 0);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM counted_answers"), 0);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM batches"), 0);
}

}  // namespace
}  // namespace quizflow::testing
