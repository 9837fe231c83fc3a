// Storage faults forced on the real writer (tests/support/faulty_store.h) under a running
// engine: a COMMIT of unknown outcome is resolved by asking the database (never applied twice,
// never lost), one that cannot be resolved degrades the engine until a restart, a failed batch
// stores nothing and answers 503-style rejections that a resend repairs, and a slow commit holds
// back nobody's answer. One writer thread (DB_WRITERS=1) throughout.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/time_util.h"
#include "egress/pg_pool.h"
#include "integration/workload.h"
#include "support/faulty_store.h"
#include "support/test_db.h"

namespace quizflow::testing {
namespace {

constexpr int64_t kQuiz = 4242;

// Polls `cond` until it holds or `timeout` passed; returns its last value.
bool wait_until(const std::function<bool()>& cond,
                std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= deadline) return cond();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

QuizDef make_quiz(int64_t quiz_id) {
  QuizDef q;
  q.quiz_id = quiz_id;
  q.title = "faults";
  q.opens_at_ms = *parse_rfc3339_ms("2026-01-01T00:00:00Z");
  q.closes_at_ms = *parse_rfc3339_ms("2027-01-01T00:00:00Z");
  const int64_t points[] = {1000, 777, 501};
  const int64_t limits[] = {20000, 15000, 9999};
  for (int k = 0; k < 3; ++k) {
    Question qu;
    qu.question_id = k + 1;
    qu.option_count = 4;
    qu.correct_option = 2;
    qu.points = points[k];
    qu.time_limit_ms = limits[k];
    q.questions.push_back(qu);
  }
  return q;
}

class FaultInjectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    start_engine();
    workload.quizzes.push_back(make_quiz(kQuiz));
    const auto r = engine->create_quiz(workload.quizzes[0]);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    ASSERT_EQ(*r, SaveQuizResult::created);
  }

  void TearDown() override {
    if (engine) engine->stop();
  }

  // A new engine on the same database (a restart reloads the state from PostgreSQL).
  void start_engine() {
    if (engine) engine->stop();
    engine.reset();
    Config c = test_config(db.url());
    c.db_writers = 1;
    auto sink = std::make_unique<CountingSink>();
    sink_ = sink.get();
    engine = std::make_unique<Engine>(
        c, std::make_unique<FaultyStore>(egress::pool_options(c), control), std::move(sink));
    const Status st = engine->start();
    ASSERT_TRUE(st.ok()) << st.to_string();
  }

  // A valid answer to kQuiz, `at_s` seconds after the quiz opened; remembered in `workload` for
  // the independent standings computation.
  SentAnswer answer(const std::string& id, int64_t user, int64_t question, int64_t option,
                    int64_t at_s, int64_t elapsed_ms) {
    SentAnswer a;
    a.event_id = id;
    a.quiz_id = kQuiz;
    a.user_id = user;
    a.question_id = question;
    a.option_id = option;
    a.answered_at_ms = workload.quizzes[0].opens_at_ms + at_s * 1000;
    a.elapsed_ms = elapsed_ms;
    a.valid = true;
    a.json = answer_json(a);
    return a;
  }

  static std::string body_of(const std::vector<SentAnswer>& answers) {
    std::string body = "{\"answers\":[";
    for (size_t i = 0; i < answers.size(); ++i) body += (i ? "," : "") + answers[i].json;
    return body + "]}";
  }

  static std::string id_list(const std::vector<SentAnswer>& answers) {
    std::string out;
    for (size_t i = 0; i < answers.size(); ++i) out += (i ? ",'" : "'") + answers[i].event_id + "'";
    return out;
  }

  // Stored rows of the event log among `answers` (each at most once: the primary key).
  int64_t stored(const std::vector<SentAnswer>& answers) const {
    return db.scalar("SELECT count(*) FROM answer_events WHERE event_id IN (" + id_list(answers) +
                     ")");
  }

  // Every item's status, checked to be all `want` (and no request-level error).
  static void expect_all(const Answered& a, ItemStatus want, size_t n, const char* what) {
    ASSERT_FALSE(a.error) << what << ": request failed: " << a.error->message;
    ASSERT_EQ(a.items.size(), n) << what;
    for (const auto& item : a.items)
      EXPECT_EQ(item.verdict.status, want)
          << what << ": " << item.event_id() << " got " << to_string(item.verdict.status) << " "
          << item.verdict.code << " " << item.verdict.message;
  }

  double figure(const std::string& name) const {
    for (const auto& f : engine->stats().figures)
      if (f.json == name) return f.value;
    ADD_FAILURE() << "no figure " << name;
    return -1;
  }

  // The live leaderboard against the standings computed from the rules (workload.h), and the
  // database's standings against the same.
  void expect_standings_as_computed() const {
    const auto expected = expected_standings(workload);
    ASSERT_FALSE(expected.empty());
    const auto page = engine->leaderboard(kQuiz, 0, 1000).value();
    ASSERT_TRUE(page);
    ASSERT_EQ(page->entries.size(), expected.size());
    EXPECT_EQ(page->total, static_cast<int64_t>(expected.size()));
    std::vector<std::vector<std::string>> want;
    for (size_t i = 0; i < expected.size(); ++i) {
      const auto& e = page->entries[i];
      EXPECT_EQ(e.rank, static_cast<int64_t>(i + 1));
      EXPECT_EQ(ExpectedStanding(
                    {kQuiz, e.user_id, e.standing.score, e.standing.correct, e.standing.time_ms}),
                expected[i])
          << "rank " << i + 1;
      want.push_back({std::to_string(expected[i].user_id), std::to_string(expected[i].score),
                      std::to_string(expected[i].correct), std::to_string(expected[i].time_ms)});
    }
    EXPECT_EQ(
        db.query("SELECT user_id, score, correct, time_ms FROM standings WHERE quiz_id = " +
                 std::to_string(kQuiz) + " ORDER BY score DESC, correct DESC, time_ms, user_id"),
        want);
  }

  TestDatabase db;
  std::shared_ptr<FaultControl> control = std::make_shared<FaultControl>();
  CountingSink* sink_ = nullptr;

  // The answer_result notifications published so far (rank_changed ones aside).
  size_t answer_results() const {
    size_t n = 0;
    for (const Notification& m : sink_->taken())
      n += m.value.find(R"("type":"answer_result")") != std::string::npos ? 1 : 0;
    return n;
  }
  std::unique_ptr<Engine> engine;  // after db and control: destroyed first
  Workload workload;               // what was sent and committed, for expected_standings
};

// libpqxx raised in_doubt_error after the COMMIT went through: the writer must find its batch key
// and report success without running the transaction again (which would find every event stored
// and answer `duplicate`, or fail on the batch key).
TEST_F(FaultInjectionTest, CommittedButReplyLostIsAcceptedOnceAndNeverRedone) {
  const std::vector<SentAnswer> sent{
      answer("lr-1", 1, 1, 2, 10, 4000),   // correct
      answer("lr-2", 1, 2, 0, 11, 1500),   // wrong
      answer("lr-3", 2, 1, 2, 12, 19999),  // correct, nearly out of time
      answer("lr-4", 2, 3, 2, 13, 1),      // correct
      answer("lr-5", 3, 1, 2, 9, 20000),   // correct at the time limit
      answer("lr-6", 3, 1, 1, 30, 100),    // superseded: a later answer to the same question
  };
  for (const auto& a : sent) workload.answers.push_back(a);
  control->lose_reply_after_commit();
  const Answered first = submit_and_wait(*engine, body_of(sent));
  expect_all(first, ItemStatus::accepted, sent.size(), "first submission");
  EXPECT_EQ(control->replies_lost(), 1) << "the fault did not fire";
  EXPECT_EQ(control->commits(), 1);

  EXPECT_EQ(stored(sent), static_cast<int64_t>(sent.size()));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events"), static_cast<int64_t>(sent.size()));
  EXPECT_EQ(db.query("SELECT quiz_ids::text, events FROM batches"),
            (std::vector<std::vector<std::string>>{{"{" + std::to_string(kQuiz) + "}", "6"}}));
  EXPECT_EQ(engine->metrics().batches.in_doubt_resolved.load(), 1);
  EXPECT_EQ(figure("batches.in_doubt_resolved"), 1);
  EXPECT_EQ(engine->metrics().batches.retries.load(), 0) << "a committed batch was redone";
  EXPECT_EQ(engine->metrics().batches.committed.load(), 1);
  EXPECT_EQ(engine->metrics().batches.failed.load(), 0);
  expect_standings_as_computed();
  // One answer_result per answer that became the counted one (lr-6 is superseded).
  EXPECT_EQ(answer_results(), sent.size() - 1);

  // The same body again: duplicates, nothing changes.
  const auto standings_before = db.query("SELECT * FROM standings ORDER BY user_id");
  const auto counted_before = db.query("SELECT * FROM counted_answers ORDER BY 1, 2, 3");
  const Answered again = submit_and_wait(*engine, body_of(sent));
  expect_all(again, ItemStatus::duplicate, sent.size(), "resubmission");
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events"), static_cast<int64_t>(sent.size()));
  EXPECT_EQ(db.query("SELECT * FROM standings ORDER BY user_id"), standings_before);
  EXPECT_EQ(db.query("SELECT * FROM counted_answers ORDER BY 1, 2, 3"), counted_before);
  EXPECT_EQ(engine->metrics().batches.in_doubt_resolved.load(), 1);
  expect_standings_as_computed();
  EXPECT_EQ(answer_results(), sent.size() - 1);
}

// The connection died before COMMIT reached the server: the COMMIT's outcome is unknown to the
// writer, the database says the transaction aborted, and the batch is redone on a new
// connection.
TEST_F(FaultInjectionTest, ConnectionLostAtCommitThatDidNotCommitIsRetriedOnce) {
  const std::vector<SentAnswer> sent{answer("dc-1", 7, 1, 2, 5, 1000),
                                     answer("dc-2", 7, 2, 2, 6, 2000),
                                     answer("dc-3", 8, 1, 3, 7, 3000)};
  for (const auto& a : sent) workload.answers.push_back(a);
  control->drop_connection_at_commit();
  const Answered a = submit_and_wait(*engine, body_of(sent));
  EXPECT_EQ(control->drop_error(), "");
  EXPECT_EQ(control->connections_dropped(), 1) << "the fault did not fire";
  expect_all(a, ItemStatus::accepted, sent.size(), "after the retry");

  EXPECT_EQ(stored(sent), static_cast<int64_t>(sent.size()));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events"), static_cast<int64_t>(sent.size()));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM batches"), 1) << "the dead attempt left a batch row";
  EXPECT_EQ(engine->metrics().batches.in_doubt_resolved.load(), 1);
  EXPECT_EQ(figure("batches.in_doubt_resolved"), 1);
  EXPECT_GE(engine->metrics().batches.retries.load(), 1);
  EXPECT_EQ(engine->metrics().batches.committed.load(), 1);
  EXPECT_EQ(engine->metrics().batches.failed.load(), 0);
  expect_standings_as_computed();
  EXPECT_EQ(answer_results(), sent.size());
}

// A batch that fails stores nothing and says so (storage_unavailable: the client resends);
// the resend is stored once; what was acknowledged before stays stored.
TEST_F(FaultInjectionTest, FailedBatchIsRejectedUnstoredAndItsResendIsStoredOnce) {
  const std::vector<SentAnswer> before{answer("fb-0", 11, 1, 2, 1, 500)};
  for (const auto& a : before) workload.answers.push_back(a);
  expect_all(submit_and_wait(*engine, body_of(before)), ItemStatus::accepted, 1, "before");

  const std::vector<SentAnswer> sent{answer("fb-1", 11, 2, 2, 2, 600),
                                     answer("fb-2", 12, 1, 2, 3, 700)};
  control->fail_next(1, Status::unavailable("injected: database unreachable"));
  const Answered failed = submit_and_wait(*engine, body_of(sent));
  ASSERT_FALSE(failed.error);
  ASSERT_EQ(failed.items.size(), sent.size());
  for (const auto& item : failed.items) {
    EXPECT_EQ(item.verdict.status, ItemStatus::rejected) << item.event_id();
    EXPECT_EQ(item.verdict.code, kStorageUnavailable) << item.event_id();
  }
  EXPECT_EQ(control->failures_injected(), 1);
  EXPECT_EQ(stored(sent), 0);
  EXPECT_EQ(engine->metrics().batches.failed.load(), 1);
  EXPECT_EQ(figure("batches.failed"), 1);
  // Memory follows the database: the failed answers count nowhere.
  expect_standings_as_computed();

  for (const auto& a : sent) workload.answers.push_back(a);
  expect_all(submit_and_wait(*engine, body_of(sent)), ItemStatus::accepted, sent.size(), "resend");
  EXPECT_EQ(stored(sent), static_cast<int64_t>(sent.size()));
  EXPECT_EQ(stored(before), 1) << "an acknowledged answer was lost";
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events"), 3);
  EXPECT_EQ(engine->metrics().batches.failed.load(), 1);
  EXPECT_EQ(engine->metrics().batches.committed.load(), 2);
  expect_standings_as_computed();
}

// COMMIT's reply is lost and the database cannot be asked what became of it (it refuses new
// connections for the whole resolution): the answers are not acknowledged (storage_unavailable,
// 503), and since the batch may have committed, the engine marks itself degraded and commits
// nothing more — its memory may lag the database, and standings written from it would overwrite
// correct rows. A restart reloads the state, and what committed counts exactly once.
TEST_F(FaultInjectionTest, UnresolvableCommitDegradesTheEngineUntilARestart) {
  const std::vector<SentAnswer> warm{answer("ud-0", 31, 1, 2, 1, 100)};
  for (const auto& a : warm) workload.answers.push_back(a);
  // Opens the writer's connection, which the next batch then uses.
  expect_all(submit_and_wait(*engine, body_of(warm)), ItemStatus::accepted, 1, "warm-up");

  db.admin("ALTER DATABASE " + db.name() + " ALLOW_CONNECTIONS false");
  const std::vector<SentAnswer> sent{answer("ud-1", 31, 2, 2, 2, 200),
                                     answer("ud-2", 32, 1, 2, 3, 300)};
  control->lose_reply_after_commit();
  const Answered lost = submit_and_wait(*engine, body_of(sent));
  db.admin("ALTER DATABASE " + db.name() + " ALLOW_CONNECTIONS true");
  EXPECT_EQ(control->replies_lost(), 1) << "the fault did not fire";
  ASSERT_FALSE(lost.error);
  ASSERT_EQ(lost.items.size(), sent.size());
  for (const auto& item : lost.items) {
    EXPECT_EQ(item.verdict.status, ItemStatus::rejected) << item.event_id();
    EXPECT_EQ(item.verdict.code, kStorageUnavailable) << item.event_id();
  }
  EXPECT_TRUE(engine->metrics().degraded.load());
  EXPECT_EQ(figure("engine.degraded"), 1);
  const HealthReport h = engine->health();
  EXPECT_TRUE(h.degraded);
  EXPECT_FALSE(h.healthy);
  // It did commit (the fault lost only the reply): stored once.
  EXPECT_EQ(stored(sent), static_cast<int64_t>(sent.size()));
  for (const auto& a : sent) workload.answers.push_back(a);

  // The database is back, but a degraded engine commits nothing.
  const std::vector<SentAnswer> later{answer("ud-3", 33, 1, 2, 4, 400)};
  const Answered refused = submit_and_wait(*engine, body_of(later));
  ASSERT_EQ(refused.items.size(), 1u);
  EXPECT_EQ(refused.items[0].verdict.code, kStorageUnavailable);
  EXPECT_EQ(stored(later), 0);
  EXPECT_EQ(control->commits(), 2) << "a degraded engine reached the writer";

  // A restart reloads what PostgreSQL holds: the lost-reply batch counts, once.
  start_engine();
  EXPECT_FALSE(engine->metrics().degraded.load());
  expect_standings_as_computed();
  for (const auto& a : later) workload.answers.push_back(a);
  expect_all(submit_and_wait(*engine, body_of(later)), ItemStatus::accepted, 1, "after restart");
  expect_all(submit_and_wait(*engine, body_of(sent)), ItemStatus::duplicate, sent.size(),
             "resend of the unresolved batch");
  expect_standings_as_computed();
}

// A commit that takes long holds the quiz's next events in its buffer; they go out in the next
// transaction and both requests are answered and stored.
TEST_F(FaultInjectionTest, RequestsArrivingWhileAQuizBatchCommitsAreAnsweredAndStored) {
  const std::vector<SentAnswer> one{answer("sl-1", 21, 1, 2, 1, 100)};
  const std::vector<SentAnswer> two{answer("sl-2", 22, 1, 2, 2, 200),
                                    answer("sl-3", 22, 2, 1, 3, 300)};
  for (const auto& a : one) workload.answers.push_back(a);
  for (const auto& a : two) workload.answers.push_back(a);
  control->delay_next(300);
  Answered a1, a2;
  std::thread t1([&] { a1 = submit_and_wait(*engine, body_of(one)); });
  // The first batch is in the writer (sleeping before its transaction): send the second now.
  const bool delaying = wait_until([&] { return control->delaying(); });
  EXPECT_TRUE(delaying) << "the first batch never reached the writer";
  std::thread t2([&] { a2 = submit_and_wait(*engine, body_of(two)); });
  t1.join();
  t2.join();
  expect_all(a1, ItemStatus::accepted, one.size(), "first request");
  expect_all(a2, ItemStatus::accepted, two.size(), "second request");
  EXPECT_EQ(control->delays_done(), 1);
  EXPECT_EQ(stored(one), 1);
  EXPECT_EQ(stored(two), 2);
  // One transaction per quiz batch: the first batch held only the first request's event (it was
  // taken before the second arrived); the second request's events followed in one more.
  EXPECT_EQ(db.query("SELECT quiz_ids::text, events FROM batches ORDER BY events"),
            (std::vector<std::vector<std::string>>{{"{" + std::to_string(kQuiz) + "}", "1"},
                                                   {"{" + std::to_string(kQuiz) + "}", "2"}}));
  EXPECT_EQ(engine->metrics().batches.committed.load(), 2);
  expect_standings_as_computed();
}

}  // namespace
}  // namespace quizflow::testing

namespace quizflow::testing {
namespace {

// Bad rows inside a bulk batch (issue 13): the real PostgreSQL refuses some rows' data (a CHECK
// constraint on the event log, as a schema change or a corrupt value would): the writer finds
// them by bisection, the rest of the batch commits in one transaction, the refused items are
// rejected `storage_rejected` with the database's reason (a rejection of the answer, not a 503),
// counted, and a resend of the good ones is a duplicate.
TEST_F(FaultInjectionTest, RowsTheDatabaseRefusesAreRejectedAndTheRestOfTheBatchCommits) {
  db.query("ALTER TABLE answer_events ADD CONSTRAINT qf_test_no_666 CHECK (user_id <> 666)");
  std::vector<SentAnswer> sent;
  std::vector<SentAnswer> good;
  for (int k = 0; k < 40; ++k) {
    const bool bad = k == 3 || k == 17 || k == 39;
    const int64_t user = bad ? 666 : 100 + k;
    sent.push_back(answer("br-" + std::to_string(k), user, 1 + k % 3, 2, 5 + k, 1000 + k));
    if (bad) continue;
    good.push_back(sent.back());
    workload.answers.push_back(sent.back());
  }
  // The refused event repeated in the same request is refused too, never `duplicate`.
  sent.push_back(sent[17]);
  const Answered a = submit_and_wait(*engine, body_of(sent));
  ASSERT_FALSE(a.error) << a.error->message;
  ASSERT_EQ(a.items.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    const Verdict& v = a.items[i].verdict;
    if (sent[i].user_id == 666) {
      EXPECT_EQ(v.status, ItemStatus::rejected) << sent[i].event_id;
      EXPECT_EQ(v.code, kStorageRejected) << sent[i].event_id;
      EXPECT_NE(v.message.find("qf_test_no_666"), std::string::npos) << v.message;
      // The server's primary message only: its DETAIL quotes the failing row.
      EXPECT_EQ(v.message.find("Failing row"), std::string::npos) << v.message;
      EXPECT_FALSE(v.server_failure());
    } else {
      EXPECT_EQ(v.status, ItemStatus::accepted)
          << sent[i].event_id << ": " << v.code << " " << v.message;
    }
  }
  EXPECT_EQ(stored(good), static_cast<int64_t>(good.size()));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events WHERE user_id = 666"), 0);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events"), static_cast<int64_t>(good.size()));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM batches"), 1) << "the good rows: one transaction";
  EXPECT_EQ(figure("stages.batch.rejected"), 4);
  expect_standings_as_computed();

  // The good ones again: duplicates; the refused ones are refused again.
  const Answered again = submit_and_wait(*engine, body_of(sent));
  ASSERT_FALSE(again.error);
  for (size_t i = 0; i < sent.size(); ++i)
    EXPECT_EQ(again.items[i].verdict.status,
              sent[i].user_id == 666 ? ItemStatus::rejected : ItemStatus::duplicate)
        << sent[i].event_id;
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events"), static_cast<int64_t>(good.size()));
  expect_standings_as_computed();
}

}  // namespace
}  // namespace quizflow::testing
