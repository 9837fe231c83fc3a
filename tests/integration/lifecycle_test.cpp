// The quiz's end (spec §3 close, §4 finalization and rewards, §5 invariants 2 and 7): a quiz
// closing during load is finalized once with its tiers applied to the final standings; a close
// racing the timer, and two engines on one database, grant each reward once; a quiz due while
// the engine was down is finalized at start-up; finalized quizzes leave memory and are served
// from PostgreSQL. Real PostgreSQL; notifications counted in memory.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "core/time_util.h"
#include "egress/pg_store.h"
#include "integration/workload.h"
#include "support/faulty_store.h"
#include "support/test_db.h"
#include "unit/test_util.h"

namespace quizflow::testing {
namespace {

using namespace std::chrono_literals;

QuizDef make_quiz(int64_t id, int64_t opens_ms, int64_t closes_ms) {
  QuizDef q;
  q.quiz_id = id;
  q.title = "lifecycle";
  q.opens_at_ms = opens_ms;
  q.closes_at_ms = closes_ms;
  for (int k = 1; k <= 3; ++k) q.questions.push_back(Question{k, 4, k % 4, 1000, 20000});
  q.rewards = {RewardTier{1, 3, "gold"}, RewardTier{4, 10, "silver"}, RewardTier{20, 25, "late"}};
  return q;
}

std::string answer(int64_t quiz, const std::string& id, int64_t user, int64_t question,
                   int64_t answered_at_ms) {
  SentAnswer a;
  a.event_id = id;
  a.quiz_id = quiz;
  a.user_id = user;
  a.question_id = question;
  a.option_id = (user * 7 + question) % 4;
  a.answered_at_ms = answered_at_ms;
  a.elapsed_ms = (user * 37) % 20000;
  return answer_json(a);
}

struct Built {
  std::unique_ptr<Engine> engine;
  CountingSink* sink = nullptr;
};

Built make_engine(const TestDatabase& db, Config c) {
  auto sink = std::make_unique<CountingSink>();
  Built b;
  b.sink = sink.get();
  b.engine = std::make_unique<Engine>(
      c, std::make_unique<egress::PgStore>(egress::PoolOptions{db.url()}), std::move(sink));
  const Status st = b.engine->start();
  EXPECT_TRUE(st.ok()) << st.to_string();
  return b;
}

bool finalized(const Engine& e, int64_t quiz) {
  auto v = e.quiz(quiz);
  return v.ok() && *v && (*v)->state == QuizState::finalized;
}

// The notifications of `type` in `messages`, by notification_id (value).
std::map<std::string, std::string> of_type(const std::vector<Notification>& messages,
                                           const std::string& type) {
  std::map<std::string, std::string> out;
  for (const Notification& m : messages) {
    rapidjson::Document d;
    d.Parse(m.value.c_str());
    if (d.HasParseError() || std::string(d["type"].GetString()) != type) continue;
    out.emplace(d["notification_id"].GetString(), m.value);
  }
  return out;
}

// The rewards the tiers give for the standings stored in PostgreSQL, computed independently:
// rank by the SQL order of spec §4, then the tier covering each rank.
std::vector<std::vector<std::string>> expected_rewards(const TestDatabase& db, const QuizDef& q) {
  const auto ranked = db.query(
      "SELECT user_id, row_number() OVER (ORDER BY score DESC, correct DESC, time_ms, user_id) "
      "FROM standings WHERE quiz_id = " +
      std::to_string(q.quiz_id) + " ORDER BY 2");
  std::vector<std::vector<std::string>> out;
  for (const auto& r : ranked) {
    const int64_t rank = std::stoll(r[1]);
    for (const RewardTier& t : q.rewards)
      if (rank >= t.rank_from && rank <= t.rank_to) out.push_back({r[0], r[1], t.reward});
  }
  return out;
}

std::vector<std::vector<std::string>> stored_rewards(const TestDatabase& db, int64_t quiz) {
  return db.query("SELECT user_id, rank, reward FROM rewards WHERE quiz_id = " +
                  std::to_string(quiz) + " ORDER BY rank");
}

TEST(Lifecycle, QuizClosingDuringLoadIsFinalizedOnceWithItsTiers) {
  TestDatabase db;
  Config c = test_config(db.url());
  c.close_grace_ms = 300;
  auto [engine, sink] = make_engine(db, c);
  const int64_t now = now_ms();
  const QuizDef q = make_quiz(41, now - 60000, now + 1500);
  ASSERT_TRUE(engine->create_quiz(q).ok());

  // Four clients answer as fast as they can, answered_at = their clock, across closes_at and
  // finalization (grace 300 ms), 40 players, until well after it.
  std::atomic<int64_t> seq{0};
  std::mutex mu;
  std::set<std::string> accepted;
  std::map<std::string, int> codes;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      const auto until = std::chrono::steady_clock::now() + 3500ms;
      while (std::chrono::steady_clock::now() < until) {
        std::string body = "{\"answers\":[";
        std::vector<std::string> ids;
        for (int k = 0; k < 10; ++k) {
          const int64_t n = seq.fetch_add(1);
          const std::string id = test::cat("c", t, "-", n);
          ids.push_back(id);
          // Some answers were tapped before closes_at but arrive late (within the grace).
          const int64_t at = now_ms() - (n % 3 == 0 ? 250 : 0);
          if (k) body += ',';
          body += answer(q.quiz_id, id, 1 + n % 40, 1 + n % 3, at);
        }
        body += "]}";
        const Answered a = submit_and_wait(*engine, body);
        std::lock_guard lock(mu);
        for (size_t i = 0; i < a.items.size(); ++i) {
          const auto& v = a.items[i].verdict;
          if (v.status == ItemStatus::accepted) accepted.insert(ids[i]);
          if (v.status == ItemStatus::rejected) ++codes[v.code];
        }
        std::this_thread::sleep_for(5ms);
      }
    });
  }
  for (auto& th : clients) th.join();
  ASSERT_TRUE(test::wait_until([&] { return finalized(*engine, q.quiz_id); }, 10s));

  EXPECT_GT(accepted.size(), 100u);
  EXPECT_GT(codes["quiz_not_open"], 0) << "answers after closes_at";
  EXPECT_GT(codes["quiz_finalized"], 0) << "answers in the grace after finalization began";
  for (const auto& [code, n] : codes)
    EXPECT_TRUE(code == "quiz_not_open" || code == "quiz_finalized") << code << " x" << n;

  // Every accepted answer is stored and nothing at or after closes_at is.
  const std::string qs = std::to_string(q.quiz_id);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events WHERE quiz_id = " + qs),
            static_cast<int64_t>(accepted.size()));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events WHERE quiz_id = " + qs +
                      " AND answered_at >= '" + format_rfc3339_ms(q.closes_at_ms) + "'"),
            0);
  // Final standings: the stored standings in rank order; rewards: the tiers applied to them.
  EXPECT_EQ(db.query("SELECT user_id, rank FROM final_standings WHERE quiz_id = " + qs +
                     " ORDER BY rank"),
            db.query("SELECT user_id::text, (row_number() OVER (ORDER BY score DESC, correct DESC,"
                     " time_ms, user_id))::text FROM standings WHERE quiz_id = " +
                     qs + " ORDER BY 2::int"));
  const auto want = expected_rewards(db, q);
  EXPECT_EQ(want.size(), 16u) << "40 players: tiers 1-3, 4-10 and 20-25";
  EXPECT_EQ(stored_rewards(db, q.quiz_id), want);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM quizzes WHERE state = 'finalized' AND quiz_id = " + qs),
            1);

  // The API serves the finalized quiz from PostgreSQL.
  auto rewards = engine->rewards(q.quiz_id);
  ASSERT_TRUE(rewards.ok() && *rewards);
  ASSERT_EQ((*rewards)->size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(std::to_string((**rewards)[i].user_id), want[i][0]);
    EXPECT_EQ((**rewards)[i].reward, want[i][2]);
  }
  auto board = engine->leaderboard(q.quiz_id, 0, 5);
  ASSERT_TRUE(board.ok() && *board);
  EXPECT_EQ((*board)->total, 40);
  ASSERT_EQ((*board)->entries.size(), 5u);
  EXPECT_EQ((*board)->entries[0].rank, 1);
  auto top = engine->player(q.quiz_id, (*board)->entries[0].user_id);
  ASSERT_TRUE(top.ok() && *top && **top);
  EXPECT_EQ((**top)->rank, 1);
  EXPECT_EQ(engine->quiz_counts().in_memory, 0) << "a finalized quiz leaves memory";
  EXPECT_EQ(engine->quiz_counts().finalized, 1);

  // One quiz_results per player and one reward_granted per reward, with deterministic ids.
  const auto msgs = sink->taken();
  const auto results = of_type(msgs, "quiz_results");
  const auto granted = of_type(msgs, "reward_granted");
  EXPECT_EQ(results.size(), 40u);
  EXPECT_EQ(granted.size(), want.size());
  for (const auto& w : want)
    EXPECT_TRUE(granted.count("reward_granted:" + qs + ":" + w[0])) << w[0];
  EXPECT_EQ(engine->metrics().lifecycle.finalizations.load(), 1);
  EXPECT_EQ(engine->metrics().lifecycle.rewards_granted.load(), static_cast<int64_t>(want.size()));

  // Late answers are refused; a close is refused; nothing changes.
  const Answered late =
      submit_and_wait(*engine, answer(q.quiz_id, "late-1", 1, 1, q.closes_at_ms - 10));
  ASSERT_EQ(late.items.size(), 1u);
  EXPECT_EQ(late.items[0].verdict.code, "quiz_finalized");
  auto closed = engine->close_quiz(q.quiz_id);
  ASSERT_TRUE(closed.ok());
  EXPECT_EQ(*closed, CloseResult::finalized);
  EXPECT_EQ(stored_rewards(db, q.quiz_id), want);
  // The outbox is emptied as deliveries are reported.
  EXPECT_TRUE(test::wait_until([&] { return db.scalar("SELECT count(*) FROM outbox") == 0; }, 5s));
}

// A close request racing the timer, and a second engine on the same database finalizing the
// same quiz at the same time: the quiz row's lock lets one finalization through.
TEST(Lifecycle, CloseRacingTheTimerAndASecondEngineGrantEachRewardOnce) {
  TestDatabase db;
  Config c = test_config(db.url());
  c.close_grace_ms = 0;
  auto a = make_engine(db, c);
  const int64_t now = now_ms();
  const QuizDef q = make_quiz(42, now - 60000, now + 1200);
  ASSERT_TRUE(a.engine->create_quiz(q).ok());
  std::string body = "{\"answers\":[";
  for (int64_t u = 1; u <= 30; ++u) {
    if (u > 1) body += ',';
    body += answer(q.quiz_id, test::cat("r-", u), u, 1, now - 1000);
  }
  body += "]}";
  for (const auto& it : submit_and_wait(*a.engine, body).items)
    ASSERT_EQ(it.verdict.status, ItemStatus::accepted);
  auto b = make_engine(db, c);  // loads the quiz; its timer fires at the same moment

  // Close requests on both engines right at closes_at, while the timers fire.
  std::this_thread::sleep_until(
      std::chrono::system_clock::time_point(std::chrono::milliseconds(q.closes_at_ms)));
  std::vector<std::thread> closers;
  for (int i = 0; i < 4; ++i)
    closers.emplace_back([&, i] {
      auto r = (i % 2 ? b : a).engine->close_quiz(q.quiz_id);
      EXPECT_TRUE(r.ok()) << r.status().to_string();
    });
  for (auto& t : closers) t.join();
  ASSERT_TRUE(test::wait_until(
      [&] { return finalized(*a.engine, q.quiz_id) && finalized(*b.engine, q.quiz_id); }, 10s));

  const auto want = expected_rewards(db, q);
  ASSERT_EQ(want.size(), 16u);  // 30 players: tiers 1-3, 4-10 and 20-25
  EXPECT_EQ(stored_rewards(db, q.quiz_id), want);
  EXPECT_EQ(a.engine->metrics().lifecycle.finalizations.load() +
                b.engine->metrics().lifecycle.finalizations.load(),
            1);
  // Each reward_granted was written (and published) once, by the engine that finalized.
  auto all = a.sink->taken();
  const auto more = b.sink->taken();
  all.insert(all.end(), more.begin(), more.end());
  std::multiset<std::string> ids;
  for (const Notification& m : all) {
    rapidjson::Document d;
    d.Parse(m.value.c_str());
    if (std::string(d["type"].GetString()) == "reward_granted")
      ids.insert(d["notification_id"].GetString());
  }
  EXPECT_EQ(ids.size(), want.size());
  for (const auto& id : ids) EXPECT_EQ(ids.count(id), 1u) << id;
  EXPECT_EQ(db.scalar("SELECT count(*) FROM final_standings WHERE quiz_id = 42"), 30);
}

// A quiz whose closes_at + grace passed while no engine ran is finalized at start-up; a quiz
// closed by request before a crash is finalized at the next start.
TEST(Lifecycle, AQuizDueWhileTheEngineWasDownIsFinalizedAtStartUp) {
  TestDatabase db;
  Config c = test_config(db.url());
  c.close_grace_ms = 200;
  const int64_t now = now_ms();
  const QuizDef due = make_quiz(43, now - 60000, now + 400);
  const QuizDef later = make_quiz(44, now - 60000, now + 3600000);
  {
    auto a = make_engine(db, c);
    ASSERT_TRUE(a.engine->create_quiz(due).ok());
    ASSERT_TRUE(a.engine->create_quiz(later).ok());
    std::string body = "{\"answers\":[";
    for (int64_t u = 1; u <= 12; ++u) {
      if (u > 1) body += ',';
      body += answer(43, test::cat("d-", u), u, 1, now - 500);
    }
    body += "]}";
    for (const auto& it : submit_and_wait(*a.engine, body).items)
      ASSERT_EQ(it.verdict.status, ItemStatus::accepted);
    a.engine->stop();  // before quiz 43 is due
    EXPECT_FALSE(finalized(*a.engine, 43));
  }
  // Quiz 44 closed by request while no engine runs (as a crash right after the request would
  // leave it).
  db.query("UPDATE quizzes SET state = 'closed', closed_at = now() WHERE quiz_id = 44");
  std::this_thread::sleep_until(std::chrono::system_clock::time_point(
      std::chrono::milliseconds(due.closes_at_ms + c.close_grace_ms + 100)));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM quizzes WHERE state = 'finalized'"), 0);
  auto b = make_engine(db, c);
  ASSERT_TRUE(test::wait_until([&] { return finalized(*b.engine, 43); }, 5s));
  ASSERT_TRUE(test::wait_until([&] { return finalized(*b.engine, 44); }, 5s));
  EXPECT_EQ(stored_rewards(db, 43), expected_rewards(db, due));
  EXPECT_EQ(stored_rewards(db, 43).size(), 10u);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM final_standings WHERE quiz_id = 44"), 0);
}

// Steady traffic on another quiz, with a single writer, does not hold a finalization off: the
// finalizing quiz goes before the next batch.
TEST(Lifecycle, AFinalizationIsNotHeldOffByTrafficOnOtherQuizzes) {
  TestDatabase db;
  Config c = test_config(db.url());
  c.db_writers = 1;
  c.batch_max_delay_ms = 0;  // quiz 51's buffer is due whenever it holds an answer
  auto [engine, sink] = make_engine(db, c);
  const int64_t now = now_ms();
  const QuizDef busy = make_quiz(51, now - 60000, now + 3600000);
  const QuizDef closing = make_quiz(52, now - 60000, now + 3600000);
  ASSERT_TRUE(engine->create_quiz(busy).ok());
  ASSERT_TRUE(engine->create_quiz(closing).ok());
  for (const auto& it : submit_and_wait(*engine, answer(52, "cl-1", 1, 1, now - 1000)).items)
    ASSERT_EQ(it.verdict.status, ItemStatus::accepted);

  // Open-loop load on quiz 51: up to 64 requests outstanding at any time, so that answers keep
  // arriving while each of its batches commits (its buffer is never empty when one finishes).
  std::atomic<bool> stop{false};
  std::atomic<int64_t> seq{0}, outstanding{0};
  std::vector<std::thread> load;
  for (int t = 0; t < 2; ++t)
    load.emplace_back([&] {
      while (!stop.load()) {
        if (outstanding.load() >= 64) {
          std::this_thread::sleep_for(100us);
          continue;
        }
        const int64_t n = seq.fetch_add(1);
        outstanding.fetch_add(1);
        const auto r =
            engine->submit(answer(51, test::cat("busy-", n), 1 + n % 500, 1 + n % 3, now - 1000),
                           [&](Request&) { outstanding.fetch_sub(1); });
        if (r != SubmitResult::admitted) outstanding.fetch_sub(1);
      }
    });
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(engine->close_quiz(52).ok());
  const bool done = test::wait_until([&] { return finalized(*engine, 52); }, 10s);
  const int64_t during = seq.load();
  std::this_thread::sleep_for(100ms);
  stop = true;
  for (auto& th : load) th.join();
  ASSERT_TRUE(test::wait_until([&] { return outstanding.load() == 0; }, 10s));
  ASSERT_TRUE(done) << "quiz 52 not finalized within 10 s of its close under load on quiz 51";
  EXPECT_GT(seq.load(), during) << "the load had stopped before the finalization";
  EXPECT_EQ(stored_rewards(db, 52).size(), 1u);
}

// A finalization that fails keeps the quiz's answers refused until one succeeds (a failure may
// be a COMMIT whose reply was lost: nothing may be stored after it), and is retried.
TEST(Lifecycle, AFailedFinalizationKeepsRefusingAnswersAndIsRetried) {
  TestDatabase db;
  Config c = test_config(db.url());
  c.close_grace_ms = 0;
  auto control = std::make_shared<FaultControl>();
  auto sink = std::make_unique<CountingSink>();
  Engine engine(c, std::make_unique<FaultyStore>(egress::pool_options(c), control),
                std::move(sink));
  ASSERT_TRUE(engine.start().ok());
  const int64_t now = now_ms();
  const QuizDef q = make_quiz(53, now - 60000, now + 800);
  ASSERT_TRUE(engine.create_quiz(q).ok());
  std::string body = "{\"answers\":[";
  for (int64_t u = 1; u <= 5; ++u) {
    if (u > 1) body += ',';
    body += answer(53, test::cat("f-", u), u, 1, now - 500);
  }
  body += "]}";
  for (const auto& it : submit_and_wait(engine, body).items)
    ASSERT_EQ(it.verdict.status, ItemStatus::accepted);
  control->fail_next_finalizations(2);  // the first two attempts fail (retried after 1 s, 2 s)
  ASSERT_TRUE(test::wait_until([&] { return control->finalizations_failed() >= 1; }, 5s));
  // Between the failed attempts: answers tapped before closes_at are still refused.
  int64_t n = 0;
  while (control->finalizations_failed() < 2 || !finalized(engine, 53)) {
    const Answered a =
        submit_and_wait(engine, answer(53, test::cat("late-", n++), 9, 2, q.closes_at_ms - 1));
    ASSERT_EQ(a.items.size(), 1u);
    EXPECT_EQ(a.items[0].verdict.code, "quiz_finalized");
    if (n > 2000) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(test::wait_until([&] { return finalized(engine, 53); }, 10s));
  EXPECT_EQ(control->finalizations_failed(), 2);
  EXPECT_GT(n, 10);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events WHERE quiz_id = 53"), 5);
  EXPECT_EQ(engine.metrics().lifecycle.finalize_failures.load(), 2);
  EXPECT_EQ(engine.metrics().lifecycle.finalizations.load(), 1);
  EXPECT_EQ(stored_rewards(db, 53), expected_rewards(db, q));
  engine.stop();
}

// Start-up loads the definitions of live quizzes only: no standings (a live quiz's are loaded on
// first use, a finalized quiz's are read from PostgreSQL).
TEST(Lifecycle, StartUpLoadsNothingOfFinalizedQuizzesAndLiveOnesOnFirstUse) {
  TestDatabase db;
  Config c = test_config(db.url());
  const int64_t now = now_ms();
  const QuizDef done = make_quiz(45, now - 60000, now + 3600000);
  const QuizDef live = make_quiz(46, now - 60000, now + 3600000);
  const QuizDef first_batch = make_quiz(47, now - 60000, now + 3600000);
  std::vector<StandingEntry> live_before, done_before;
  {
    auto a = make_engine(db, c);
    ASSERT_TRUE(a.engine->create_quiz(done).ok());
    ASSERT_TRUE(a.engine->create_quiz(live).ok());
    ASSERT_TRUE(a.engine->create_quiz(first_batch).ok());
    for (int64_t quiz : {45, 46, 47}) {
      std::string body = "{\"answers\":[";
      for (int64_t u = 1; u <= 25; ++u) {
        if (u > 1) body += ',';
        body += answer(quiz, test::cat("s-", quiz, "-", u), u, 1 + u % 3, now - 1000);
      }
      body += "]}";
      for (const auto& it : submit_and_wait(*a.engine, body).items)
        ASSERT_EQ(it.verdict.status, ItemStatus::accepted);
    }
    live_before = (*a.engine->leaderboard(46, 0, 100).value()).entries;
    done_before = (*a.engine->leaderboard(45, 0, 100).value()).entries;
    ASSERT_TRUE(a.engine->close_quiz(45).ok());
    ASSERT_TRUE(test::wait_until([&] { return finalized(*a.engine, 45); }, 5s));
    EXPECT_EQ(a.engine->quiz_counts().in_memory, 2);
  }
  auto b = make_engine(db, c);
  EXPECT_EQ(b.engine->quiz_counts().in_memory, 0) << "start-up loaded standings";
  EXPECT_EQ(b.engine->quiz_counts().finalized, 1);
  EXPECT_EQ(b.engine->quiz_counts().open, 2);
  // Quiz 47's first use is a batch: it is loaded before the batch is scored against it (scored
  // against nothing, the new standing of user 1 would be just this answer, and the writer would
  // find the stored rows other than expected).
  const Answered first = submit_and_wait(*b.engine, answer(47, "s-47-new", 1, 3, now - 900));
  ASSERT_EQ(first.items.size(), 1u);
  EXPECT_EQ(first.items[0].verdict.status, ItemStatus::accepted);
  EXPECT_EQ(b.engine->quiz_counts().in_memory, 1);
  EXPECT_EQ(b.engine->metrics().batches.state_mismatches.load(), 0);
  const auto p47 = b.engine->player(47, 1).value();
  ASSERT_TRUE(p47 && *p47);
  EXPECT_EQ(db.scalar("SELECT score FROM standings WHERE quiz_id = 47 AND user_id = 1"),
            (*p47)->standing.score);
  EXPECT_EQ(db.scalar("SELECT correct FROM standings WHERE quiz_id = 47 AND user_id = 1"),
            (*p47)->standing.correct);
  // The finalized quiz from PostgreSQL: the same standings, frozen.
  auto fin = b.engine->leaderboard(45, 0, 100).value();
  ASSERT_TRUE(fin);
  ASSERT_EQ(fin->entries.size(), done_before.size());
  for (size_t i = 0; i < fin->entries.size(); ++i) {
    EXPECT_EQ(fin->entries[i].user_id, done_before[i].user_id);
    EXPECT_EQ(fin->entries[i].rank, done_before[i].rank);
    EXPECT_EQ(fin->entries[i].standing, done_before[i].standing);
  }
  EXPECT_EQ(b.engine->quiz_counts().in_memory, 1);
  // The live quiz is loaded by its first read, equal to what it was.
  auto page = b.engine->leaderboard(46, 0, 100).value();
  ASSERT_TRUE(page);
  ASSERT_EQ(page->entries.size(), live_before.size());
  for (size_t i = 0; i < page->entries.size(); ++i) {
    EXPECT_EQ(page->entries[i].user_id, live_before[i].user_id);
    EXPECT_EQ(page->entries[i].standing, live_before[i].standing);
  }
  EXPECT_EQ(b.engine->quiz_counts().in_memory, 2);
  // ... and its next batch scores against it.
  const Answered more = submit_and_wait(*b.engine, answer(46, "s-46-new", 1, 3, now - 900));
  ASSERT_EQ(more.items.size(), 1u);
  EXPECT_EQ(more.items[0].verdict.status, ItemStatus::accepted);
  const auto p1 = b.engine->player(46, 1).value();
  ASSERT_TRUE(p1 && *p1);
  EXPECT_EQ(db.scalar("SELECT score FROM standings WHERE quiz_id = 46 AND user_id = 1"),
            (*p1)->standing.score);
}

}  // namespace
}  // namespace quizflow::testing
