// Invariants of spec §5 against the real PostgreSQL: order- and batching-independence,
// idempotence, one transaction per quiz batch, durable acknowledgement, rebuild on restart.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <pqxx/pqxx>
#include <random>
#include <sstream>
#include <thread>

#include "egress/pg_store.h"
#include "ingress/event_file.h"
#include "integration/workload.h"
#include "pipeline/replay.h"
#include "support/test_db.h"
#include "unit/test_util.h"

namespace quizflow::testing {
namespace {

struct Tally {
  std::atomic<int64_t> accepted{0}, duplicates{0}, rejected{0}, request_errors{0};
};

std::unique_ptr<Engine> make_engine(const TestDatabase& db, Config c,
                                    CountingSink** sink_out = nullptr) {
  auto sink = std::make_unique<CountingSink>();
  if (sink_out) *sink_out = sink.get();
  auto e = std::make_unique<Engine>(
      std::move(c), std::make_unique<egress::PgStore>(egress::PoolOptions{db.url()}),
      std::move(sink));
  if (Status st = e->start(); !st.ok()) throw std::runtime_error(st.to_string());
  return e;
}

void create_quizzes(Engine& e, const Workload& w) {
  for (const auto& q : w.quizzes) {
    const auto r = e.create_quiz(q);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    ASSERT_NE(*r, SaveQuizResult::conflict);
  }
}

// Sends the answers in `order`, in requests of random sizes up to max_request, from `threads`
// concurrent senders.
void send(Engine& e, const std::vector<const SentAnswer*>& order, size_t max_request, int threads,
          uint32_t seed, Tally& tally) {
  std::vector<std::vector<const SentAnswer*>> requests;
  std::mt19937 rng(seed);
  for (size_t i = 0; i < order.size();) {
    const size_t n = std::uniform_int_distribution<size_t>(1, max_request)(rng);
    requests.emplace_back(
        order.begin() + static_cast<std::ptrdiff_t>(i),
        order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), i + n)));
    i += n;
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (size_t r; (r = next.fetch_add(1)) < requests.size();) {
        std::string body;
        if (requests[r].size() == 1 && r % 2 == 0) {
          body = requests[r][0]->json;  // single-answer form
        } else {
          body = "{\"answers\":[";
          for (size_t k = 0; k < requests[r].size(); ++k) {
            if (k) body += ',';
            body += requests[r][k]->json;
          }
          body += "]}";
        }
        const Answered a = submit_and_wait(e, body);
        if (a.error) {
          tally.request_errors++;
          continue;
        }
        for (const auto& item : a.items) {
          switch (item.verdict.status) {
            case ItemStatus::accepted:
              tally.accepted++;
              break;
            case ItemStatus::duplicate:
              tally.duplicates++;
              break;
            case ItemStatus::rejected:
              tally.rejected++;
              break;
            default:
              ADD_FAILURE() << "item left pending";
              break;
          }
        }
      }
    });
  }
  for (auto& t : pool) t.join();
}

// An engine on `db` creates the workload's quizzes, takes `answers` and stops again.
void answer_and_stop(const TestDatabase& db, const Workload& w,
                     const std::vector<const SentAnswer*>& answers, Tally& t) {
  auto e = make_engine(db, test_config(db.url()));
  create_quizzes(*e, w);
  send(*e, answers, 20, 4, 1, t);
  e->stop();
}

std::vector<std::vector<std::string>> db_standings(const TestDatabase& db) {
  return db.query(
      "SELECT quiz_id, user_id, score, correct, time_ms FROM standings "
      "ORDER BY quiz_id, score DESC, correct DESC, time_ms, user_id");
}

std::vector<std::vector<std::string>> expected_rows(const Workload& w) {
  std::vector<std::vector<std::string>> out;
  for (const auto& s : expected_standings(w))
    out.push_back({std::to_string(s.quiz_id), std::to_string(s.user_id), std::to_string(s.score),
                   std::to_string(s.correct), std::to_string(s.time_ms)});
  return out;
}

// A query on the database named by DATABASE_URL, not on a test database: the statistics of a test
// database are read from outside it, so that reading them adds no session and no transaction to
// what is being counted.
int64_t server_scalar(const std::string& sql) {
  const char* url = std::getenv("DATABASE_URL");
  pqxx::connection c(url ? url : "");
  pqxx::nontransaction tx(c);
  return tx.exec(sql)[0][0].as<int64_t>();
}

int64_t xact_commits(const TestDatabase& db) {
  return server_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = '" + db.name() +
                       "'");
}

// Sessions connected to `db`. A backend flushes its statistics (xact_commit) when it exits, before
// it leaves pg_stat_activity (PostgreSQL 15+: the flush is a before_shmem_exit callback, the
// pg_stat_activity entry is cleared by a later on_shmem_exit one), so once this is 0, every
// closed session's commits are counted in pg_stat_database.
int64_t sessions(const TestDatabase& db) {
  return server_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = '" + db.name() + "'");
}

TEST(PipelineInvariants, AnyOrderAndBatchingGivesTheIndependentlyComputedStandings) {
  const Workload w = make_workload(20261127, 9000, 1000, 700);
  ASSERT_GE(w.answers.size(), 10000u);
  const auto expected = expected_rows(w);

  // Run A: workload order, small requests, 4 concurrent senders, batches of up to 500.
  TestDatabase db_a;
  Tally ta;
  int64_t commits_a = 0, batches_a = 0;
  double engine_s = 0;  // how long the engine ran (its background transactions scale with it)
  {
    const auto started = std::chrono::steady_clock::now();
    auto e = make_engine(db_a, test_config(db_a.url()));
    create_quizzes(*e, w);
    std::vector<const SentAnswer*> order;
    for (const auto& a : w.answers) order.push_back(&a);
    const int64_t before = xact_commits(db_a);
    send(*e, order, 40, 4, 1, ta);
    e->stop();
    engine_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    batches_a = e->metrics().batches.committed.load();
    e.reset();  // closes its connections: their backends flush their statistics on exit
    ASSERT_TRUE(
        quizflow::test::wait_until([&] { return sessions(db_a) == 0; }, std::chrono::seconds(30)))
        << sessions(db_a) << " session(s) still connected to " << db_a.name()
        << " 30 s after the engine closed its connections";
    commits_a = xact_commits(db_a) - before;
  }
  EXPECT_EQ(ta.request_errors.load(), 0);
  EXPECT_EQ(ta.accepted.load(), static_cast<int64_t>(w.distinct_valid));
  EXPECT_EQ(ta.duplicates.load(), static_cast<int64_t>(w.resends));
  EXPECT_EQ(ta.rejected.load(), static_cast<int64_t>(w.invalid));
  EXPECT_EQ(db_a.scalar("SELECT count(*) FROM answer_events"),
            static_cast<int64_t>(w.distinct_valid));
  EXPECT_EQ(db_a.scalar("SELECT count(*) FROM batches"), batches_a);
  const auto standings_a = db_standings(db_a);
  EXPECT_EQ(standings_a, expected);

  // One transaction per quiz batch: commits are about one per batch, far fewer than answers.
  const auto answers = static_cast<int64_t>(w.distinct_valid + w.resends);
  EXPECT_LE(batches_a, answers / 10) << "batches should hold many answers each";
  // Beyond one per batch: DDL, quiz creation, loads, and per second of the engine's life the
  // health ping (1) and the outbox relay (at most 10 deletes of delivered rows and 2 reads).
  const auto background = static_cast<int64_t>(60 + 13 * std::ceil(engine_s));
  EXPECT_LE(commits_a, batches_a + background)
      << "commits beyond one per batch (" << engine_s << " s of engine life)";
  EXPECT_GE(commits_a, batches_a);
  std::printf("run A: %lld answers, %lld batches, %lld commits (%.4f commits/answer)\n",
              static_cast<long long>(answers), static_cast<long long>(batches_a),
              static_cast<long long>(commits_a),
              static_cast<double>(commits_a) / static_cast<double>(answers));

  // Run B: reversed-and-shuffled order, large requests, one sender, batches of up to 37.
  TestDatabase db_b;
  Tally tb;
  {
    Config c = test_config(db_b.url());
    c.batch_max_size = 37;
    c.batch_max_delay_ms = 0;
    c.db_writers = 1;
    auto e = make_engine(db_b, c);
    create_quizzes(*e, w);
    std::vector<const SentAnswer*> order;
    for (const auto& a : w.answers) order.push_back(&a);
    std::reverse(order.begin(), order.end());
    std::shuffle(order.begin(), order.end(), std::mt19937(99));
    send(*e, order, 300, 1, 2, tb);
    // Live standings (in memory) equal the database's.
    for (const auto& q : w.quizzes) {
      auto page = e->leaderboard(q.quiz_id, 0, 1000).value();
      ASSERT_TRUE(page);
      std::vector<std::vector<std::string>> live;
      for (const auto& en : page->entries)
        live.push_back({std::to_string(q.quiz_id), std::to_string(en.user_id),
                        std::to_string(en.standing.score), std::to_string(en.standing.correct),
                        std::to_string(en.standing.time_ms)});
      std::vector<std::vector<std::string>> want;
      for (const auto& r : expected)
        if (r[0] == std::to_string(q.quiz_id)) want.push_back(r);
      EXPECT_EQ(live, want) << "quiz " << q.quiz_id;
      for (size_t i = 0; i < page->entries.size(); ++i)
        EXPECT_EQ(page->entries[i].rank, static_cast<int64_t>(i + 1));
    }
  }
  EXPECT_EQ(tb.accepted.load(), static_cast<int64_t>(w.distinct_valid));
  EXPECT_EQ(db_standings(db_b), standings_a);
  EXPECT_EQ(db_a.query("SELECT quiz_id, user_id, question_id, event_id FROM counted_answers "
                       "ORDER BY 1, 2, 3"),
            db_b.query("SELECT quiz_id, user_id, question_id, event_id FROM counted_answers "
                       "ORDER BY 1, 2, 3"));

  // Idempotent: everything sent again to A changes nothing; no item is accepted twice.
  {
    auto e = make_engine(db_a, test_config(db_a.url()));
    Tally again;
    std::vector<const SentAnswer*> order;
    for (const auto& a : w.answers) order.push_back(&a);
    send(*e, order, 100, 2, 3, again);
    EXPECT_EQ(again.accepted.load(), 0);
    EXPECT_EQ(again.duplicates.load(), static_cast<int64_t>(w.distinct_valid + w.resends));
    EXPECT_EQ(again.rejected.load(), static_cast<int64_t>(w.invalid));
  }
  EXPECT_EQ(db_standings(db_a), standings_a);
  EXPECT_EQ(db_a.scalar("SELECT count(*) FROM answer_events"),
            static_cast<int64_t>(w.distinct_valid));
}

// Many small quizzes: their batches share transactions (each quiz's batch whole), and the
// result is the same as ever.
TEST(PipelineInvariants, SmallQuizzesShareTransactions) {
  const Workload w = make_workload(31, 4000, 300, 0, 5000, 400);
  TestDatabase db;
  Tally t;
  int64_t transactions = 0;
  {
    auto e = make_engine(db, test_config(db.url()));
    create_quizzes(*e, w);
    std::vector<const SentAnswer*> order;
    for (const auto& a : w.answers) order.push_back(&a);
    send(*e, order, 20, 8, 5, t);
    e->stop();
    transactions = e->metrics().batches.committed.load();
  }
  EXPECT_EQ(t.request_errors.load(), 0);
  EXPECT_EQ(t.accepted.load(), static_cast<int64_t>(w.distinct_valid));
  EXPECT_EQ(t.duplicates.load(), static_cast<int64_t>(w.resends));
  EXPECT_EQ(db_standings(db), expected_rows(w));
  EXPECT_EQ(db.scalar("SELECT count(*) FROM batches"), transactions);
  // 400 quizzes with about 10 answers each: without sharing, nearly every answer would be a
  // transaction of its own.
  const auto answers = static_cast<int64_t>(w.answers.size());
  EXPECT_LE(transactions, answers / 10);
  EXPECT_GT(db.scalar("SELECT count(*) FROM batches WHERE cardinality(quiz_ids) > 1"), 0);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM batches WHERE quiz_id IS NOT NULL AND "
                      "quiz_ids <> ARRAY[quiz_id]"),
            0);
  // Every stored answer's quiz is listed by some transaction.
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events WHERE quiz_id NOT IN "
                      "(SELECT unnest(quiz_ids) FROM batches)"),
            0);
  std::printf("%lld answers over %zu quizzes in %lld transactions\n",
              static_cast<long long>(answers), w.quizzes.size(),
              static_cast<long long>(transactions));
}

// Spec §3: an event_id is unique within its quiz. The same id in three quizzes is three answers
// (in one request, so in one transaction, and again across transactions); a resend of each is a
// duplicate.
TEST(PipelineInvariants, TheSameEventIdInSeveralQuizzesIsSeveralAnswers) {
  const Workload w = make_workload(11, 30, 0, 0, 3);
  TestDatabase db;
  auto e = make_engine(db, test_config(db.url()));
  create_quizzes(*e, w);
  ASSERT_EQ(w.quizzes.size(), 3u);
  auto body_for = [&](const std::vector<size_t>& quizzes) {
    std::string body = "{\"answers\":[";
    for (size_t i = 0; i < quizzes.size(); ++i) {
      SentAnswer a;
      a.event_id = "shared-id";
      a.quiz_id = w.quizzes[quizzes[i]].quiz_id;
      a.user_id = 1;
      a.question_id = w.quizzes[quizzes[i]].questions.front().question_id;
      a.option_id = 0;
      a.answered_at_ms = w.quizzes[quizzes[i]].opens_at_ms + 1000;
      a.elapsed_ms = 10;
      if (i > 0) body += ',';
      body += answer_json(a);
    }
    return body + "]}";
  };
  const Answered first = submit_and_wait(*e, body_for({0, 1}));
  ASSERT_EQ(first.items.size(), 2u);
  for (const auto& it : first.items) EXPECT_EQ(it.verdict.status, ItemStatus::accepted);
  const Answered second = submit_and_wait(*e, body_for({2, 1, 0}));
  ASSERT_EQ(second.items.size(), 3u);
  EXPECT_EQ(second.items[0].verdict.status, ItemStatus::accepted);
  EXPECT_EQ(second.items[1].verdict.status, ItemStatus::duplicate);
  EXPECT_EQ(second.items[2].verdict.status, ItemStatus::duplicate);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events WHERE event_id = 'shared-id'"), 3);
  EXPECT_EQ(db.scalar("SELECT count(DISTINCT quiz_id) FROM standings"), 3);
}

TEST(PipelineInvariants, AcceptedAnswerIsInTheDatabaseWhenItsResponseArrives) {
  const Workload w = make_workload(7, 600, 0, 0, 200);
  TestDatabase db;
  auto e = make_engine(db, test_config(db.url()));
  create_quizzes(*e, w);
  for (size_t i = 0; i < w.answers.size(); i += 3) {
    std::string body = "{\"answers\":[";
    std::string ids;
    for (size_t k = i; k < std::min(i + 3, w.answers.size()); ++k) {
      if (k > i) {
        body += ',';
        ids += ',';
      }
      body += w.answers[k].json;
      ids += "'" + w.answers[k].event_id + "'";
    }
    body += "]}";
    const Answered a = submit_and_wait(*e, body);
    int64_t accepted = 0;
    for (const auto& it : a.items) accepted += it.verdict.status == ItemStatus::accepted;
    ASSERT_GT(accepted, 0);
    // Checked from another connection right after the response: the rows must be there.
    EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events WHERE event_id IN (" + ids + ")"),
              accepted);
  }
}

TEST(PipelineInvariants, RestartRebuildsTheSameStandingsFromStorage) {
  const Workload w = make_workload(11, 3000, 200, 100, 300);
  TestDatabase db;
  std::vector<LeaderboardPage> before;
  {
    auto e = make_engine(db, test_config(db.url()));
    create_quizzes(*e, w);
    std::vector<const SentAnswer*> order;
    for (const auto& a : w.answers) order.push_back(&a);
    Tally t;
    send(*e, order, 50, 2, 4, t);
    for (const auto& q : w.quizzes) before.push_back(*e->leaderboard(q.quiz_id, 0, 1000).value());
  }
  auto e = make_engine(db, test_config(db.url()));
  for (size_t i = 0; i < w.quizzes.size(); ++i) {
    auto after = e->leaderboard(w.quizzes[i].quiz_id, 0, 1000).value();
    ASSERT_TRUE(after);
    ASSERT_EQ(after->total, before[i].total);
    ASSERT_EQ(after->entries.size(), before[i].entries.size());
    for (size_t k = 0; k < after->entries.size(); ++k) {
      EXPECT_EQ(after->entries[k].user_id, before[i].entries[k].user_id);
      EXPECT_EQ(after->entries[k].standing, before[i].entries[k].standing);
    }
    EXPECT_GT(after->total, 0);
  }
}

// Invariant 4: replaying the event log with the live rules (pipeline/replay.h) gives exactly the
// standings and counted answers live processing stored — and the independently computed ones; a
// corrupted standing is found as the one difference.
TEST(PipelineInvariants, ReplayingTheLogGivesTheLiveStandings) {
  const Workload w = make_workload(4242, 100000, 2000, 500);
  TestDatabase db;
  Tally t;
  {
    auto e = make_engine(db, test_config(db.url()));
    create_quizzes(*e, w);
    std::vector<const SentAnswer*> order;
    for (const auto& a : w.answers) order.push_back(&a);
    send(*e, order, 60, 4, 9, t);
    e->stop();
  }
  ASSERT_EQ(t.request_errors.load(), 0);
  egress::PgStore store(egress::PoolOptions{db.url()});
  std::vector<ExpectedStanding> replayed_all;
  int64_t events = 0;
  for (const QuizDef& q : w.quizzes) {
    SCOPED_TRACE(q.quiz_id);
    std::vector<AnswerEvent> log;
    const auto read =
        store.read_events({q.quiz_id}, [&](const AnswerEvent& e) { log.push_back(e); }, {});
    ASSERT_TRUE(read.ok()) << read.status().to_string();
    events += *read;
    const ReplayedQuiz r = replay_quiz(q, log);
    EXPECT_EQ(r.rejected, 0);
    const auto stored = store.load_standings(q.quiz_id);
    ASSERT_TRUE(stored.ok()) << stored.status().to_string();
    EXPECT_TRUE(diff_standings(*stored, r.standings).empty());
    const auto counted = store.load_counted(q.quiz_id);
    ASSERT_TRUE(counted.ok());
    std::map<std::pair<int64_t, int32_t>, std::string> stored_counted, replayed_counted;
    for (const auto& c : counted->rows) stored_counted[{c.user_id, c.question_id}] = c.event_id;
    for (const auto& c : r.counted) replayed_counted[{c.user_id, c.question_id}] = c.event_id;
    EXPECT_EQ(stored_counted, replayed_counted);
    for (const auto& s : r.standings)
      replayed_all.push_back(ExpectedStanding{q.quiz_id, s.user_id, s.score, s.correct, s.time_ms});
  }
  EXPECT_EQ(events, static_cast<int64_t>(w.distinct_valid));
  std::vector<ExpectedStanding> expected = expected_standings(w);
  auto by_key = [](const ExpectedStanding& a, const ExpectedStanding& b) {
    return std::tie(a.quiz_id, a.user_id) < std::tie(b.quiz_id, b.user_id);
  };
  std::sort(expected.begin(), expected.end(), by_key);
  std::sort(replayed_all.begin(), replayed_all.end(), by_key);
  EXPECT_TRUE(replayed_all == expected) << "replay differs from the independent computation";

  // A damaged standing is the one difference replay finds.
  const int64_t quiz = w.quizzes[0].quiz_id;
  const auto before = store.load_standings(quiz);
  ASSERT_TRUE(before.ok() && !before->empty());
  const StandingRow victim = (*before)[before->size() / 2];
  db.query(test::cat("UPDATE standings SET score = score + 7 WHERE quiz_id = ", quiz,
                     " AND user_id = ", victim.user_id));
  std::vector<AnswerEvent> log;
  ASSERT_TRUE(store.read_events({quiz}, [&](const AnswerEvent& e) { log.push_back(e); }, {}).ok());
  const auto after = store.load_standings(quiz);
  ASSERT_TRUE(after.ok());
  const auto diffs = diff_standings(*after, replay_quiz(w.quizzes[0], log).standings);
  ASSERT_EQ(diffs.size(), 1u);
  EXPECT_EQ(diffs[0].user_id, victim.user_id);
  ASSERT_TRUE(diffs[0].stored && diffs[0].replayed);
  EXPECT_EQ(diffs[0].stored->score, victim.score + 7);
  EXPECT_EQ(diffs[0].replayed->score, victim.score);

  // A rebuild that dies half-way (its computation throws, as a killed replay would stop) leaves
  // the quiz's rows as they were: one transaction per quiz.
  const auto before_rows = db_standings(db);
  const auto died =
      store.rebuild_quiz(quiz,
                         [](const QuizDef&, const std::vector<AnswerEvent>&) -> DerivedRows {
                           throw std::runtime_error("killed");
                         },
                         {});
  EXPECT_FALSE(died.ok());
  EXPECT_EQ(db_standings(db), before_rows);

  // Wiped, then rebuilt in place: every quiz's rows are back, equal to the independent result.
  db.query("DELETE FROM standings");
  db.query(test::cat("DELETE FROM counted_answers WHERE quiz_id = ", quiz));
  const auto rebuilt = replay_log(store, {}, ReplayOptions{/*dry_run=*/false, 20, /*jobs=*/3});
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status().to_string();
  EXPECT_EQ(rebuilt->quizzes, static_cast<int64_t>(w.quizzes.size()));
  EXPECT_EQ(rebuilt->events, static_cast<int64_t>(w.distinct_valid));
  EXPECT_EQ(db_standings(db), expected_rows(w));
  const auto again = replay_log(store, {}, ReplayOptions{/*dry_run=*/true, 20});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->players_changed, 0);
}

// Replay while answers keep arriving: an engine whose memory disagrees with the log (the counted
// answers it loads were damaged: a scoring bug) keeps ingesting while the log is replayed in
// place. The replay puts every quiz right; the engine's next batches find their quizzes rebuilt
// (stale), reload them and write from the rebuilt state — so what is stored at the end is the
// independent computation over all events, and its leaderboards agree with the table.
// Moving quizzes: the export of one database, replayed from the file into an empty one, gives
// the same log, standings, final standings and rewards (granted once, nothing notified again);
// again, it adds nothing; a dry run from the file changes nothing.
TEST(PipelineInvariants, ExportThenReplayFromTheFileIntoAnEmptyDatabaseGivesTheSameStandings) {
  Workload w = make_workload(9911, 20000, 60, 300);
  w.quizzes[1].rewards = {RewardTier{1, 3, "gold"}, RewardTier{4, 10, "silver"}};
  TestDatabase db;
  std::vector<const SentAnswer*> all;
  for (const auto& a : w.answers) all.push_back(&a);
  Tally t;
  const int64_t finalized = w.quizzes[1].quiz_id;
  {
    auto e = make_engine(db, test_config(db.url()));
    create_quizzes(*e, w);
    send(*e, all, 25, 4, 5, t);
    ASSERT_TRUE(e->close_quiz(finalized).ok());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      auto q = e->quiz(finalized);
      if (q.ok() && *q && (*q)->state == QuizState::finalized) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    e->stop();
  }
  ASSERT_EQ(db_standings(db), expected_rows(w));
  auto table = [](const TestDatabase& d, const std::string& sql) { return d.query(sql); };
  const std::string kLog = "SELECT * FROM answer_events ORDER BY quiz_id, event_id";
  const std::string kFinal = "SELECT * FROM final_standings ORDER BY quiz_id, rank";
  const std::string kRewards = "SELECT quiz_id, user_id, rank, reward FROM rewards ORDER BY 1, 2";
  const std::string kQuizzes = "SELECT quiz_id, definition, state FROM quizzes ORDER BY 1";
  ASSERT_FALSE(table(db, kRewards).empty()) << "the finalized quiz granted no reward";

  egress::PgStore source(egress::PoolOptions{db.url()});
  std::ostringstream file;
  const auto exported = ingress::export_events(source, {}, file);
  ASSERT_TRUE(exported.ok()) << exported.status().to_string();
  const std::string text = file.str();

  TestDatabase empty;
  egress::PgStore target(egress::PoolOptions{empty.url()});
  ASSERT_TRUE(target.migrate().ok());
  auto replay = [&](bool dry_run) {
    std::istringstream in(text);
    ingress::EventFileRuns runs(in, static_cast<int64_t>(text.size()), {});
    return replay_runs(target, runs, ReplayOptions{dry_run, 5});
  };
  const auto dry = replay(/*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status().to_string();
  EXPECT_GT(dry->players_changed, 0);
  EXPECT_TRUE(table(empty, kQuizzes).empty()) << "a dry run stored quizzes";
  EXPECT_TRUE(table(empty, kLog).empty()) << "a dry run stored events";

  const auto imported = replay(/*dry_run=*/false);
  ASSERT_TRUE(imported.ok()) << imported.status().to_string();
  EXPECT_EQ(imported->appended, exported->events);
  EXPECT_EQ(imported->quizzes_created, static_cast<int64_t>(w.quizzes.size()));
  EXPECT_TRUE(imported->conflicting_quizzes.empty());
  EXPECT_EQ(db_standings(empty), db_standings(db));
  EXPECT_EQ(table(empty, kLog), table(db, kLog));
  EXPECT_EQ(table(empty, kQuizzes), table(db, kQuizzes));
  EXPECT_EQ(table(empty, kFinal), table(db, kFinal));
  EXPECT_EQ(table(empty, kRewards), table(db, kRewards));
  EXPECT_EQ(table(empty, "SELECT count(*) FROM outbox"),
            (std::vector<std::vector<std::string>>{{"0"}}));

  // Importing again adds nothing and changes nothing; a dry run finds nothing to change.
  const auto again = replay(/*dry_run=*/false);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_EQ(again->appended, 0);
  EXPECT_EQ(again->quizzes_created, 0);
  EXPECT_EQ(again->players_changed, 0);
  EXPECT_EQ(table(empty, kRewards), table(db, kRewards));
  const auto check = replay(/*dry_run=*/true);
  ASSERT_TRUE(check.ok()) << check.status().to_string();
  EXPECT_EQ(check->players_changed, 0);
}

TEST(PipelineInvariants, ARunningEngineTakesRebuiltStandingsWithoutFurtherAnswers) {
  const Workload w = make_workload(4242, 3000, 40, 0);
  TestDatabase db;
  std::vector<const SentAnswer*> all;
  for (const auto& a : w.answers) all.push_back(&a);
  Tally t;
  answer_and_stop(db, w, all, t);
  const int64_t q0 = w.quizzes[0].quiz_id;
  db.query(test::cat("UPDATE counted_answers SET points = points + 7 WHERE quiz_id = ", q0));
  auto e = make_engine(db, test_config(db.url()));
  auto board = [&] {
    std::vector<std::pair<int64_t, int64_t>> rows;  // (user, score) in rank order
    auto page = e->leaderboard(q0, 0, 100000);
    if (page.ok() && *page)
      for (const auto& entry : (*page)->entries)
        rows.emplace_back(entry.user_id, entry.standing.score);
    return rows;
  };
  const auto damaged = board();  // loads the damaged counted answers into memory
  ASSERT_FALSE(damaged.empty());
  egress::PgStore store(egress::PoolOptions{db.url()});
  auto summary = replay_log(store, {q0}, ReplayOptions{/*dry_run=*/false, 5});
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  ASSERT_EQ(db_standings(db), expected_rows(w));
  std::vector<std::pair<int64_t, int64_t>> expected;  // the table's, in rank order
  for (const auto& r :
       db.query(test::cat("SELECT user_id, score FROM standings WHERE quiz_id = ", q0,
                          " ORDER BY score DESC, correct DESC, time_ms ASC, user_id ASC")))
    expected.emplace_back(std::stoll(r[0]), std::stoll(r[1]));
  ASSERT_NE(damaged, expected);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((board() != expected || e->metrics().batches.replay_refreshes.load() == 0) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(board(), expected) << "the engine still serves the damaged standings";
  EXPECT_EQ(e->metrics().batches.replay_refreshes.load(), 1);
  EXPECT_EQ(e->metrics().batches.stale_reloads.load(), 0);
  e->stop();
}

TEST(PipelineInvariants, ReplayWhileAnswersArriveEndsEqualToTheIndependentComputation) {
  const Workload w = make_workload(777, 12000, 300, 0);
  TestDatabase db;
  std::vector<const SentAnswer*> all;
  for (const auto& a : w.answers) all.push_back(&a);
  const size_t first = all.size() / 2, second = first + (all.size() - first) / 2;
  const std::vector<const SentAnswer*> part1(all.begin(), all.begin() + first),
      part2(all.begin() + first, all.begin() + second), part3(all.begin() + second, all.end());
  Tally t;
  answer_and_stop(db, w, part1, t);
  // The damage: every counted answer of the first quiz is worth 100 more.
  const int64_t q0 = w.quizzes[0].quiz_id;
  db.query(test::cat("UPDATE counted_answers SET points = points + 100 WHERE quiz_id = ", q0));
  auto e = make_engine(db, test_config(db.url()));  // loads the damaged rows into memory
  std::atomic<bool> replayed{false};
  Result<ReplaySummary> summary = Status::internal("not run");
  std::thread replayer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    egress::PgStore store(egress::PoolOptions{db.url()});
    summary = replay_log(store, {}, ReplayOptions{/*dry_run=*/false, 20, /*jobs=*/2});
    replayed = true;
  });
  send(*e, part2, 30, 4, 2, t);  // while the replay runs
  replayer.join();
  ASSERT_TRUE(summary.ok()) << summary.status().to_string();
  EXPECT_GE(summary->players_changed, 1) << "the damage was not found";
  auto memory_rows = [&](int64_t quiz) {
    std::vector<std::vector<std::string>> rows;
    auto page = e->leaderboard(quiz, 0, 100000);
    if (!page.ok() || !*page) return rows;
    for (const auto& entry : (*page)->entries)
      rows.push_back({std::to_string(quiz), std::to_string(entry.user_id),
                      std::to_string(entry.standing.score), std::to_string(entry.standing.correct),
                      std::to_string(entry.standing.time_ms)});
    return rows;
  };
  auto stored_rows = [&](int64_t quiz) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& row : db_standings(db))
      if (row[0] == std::to_string(quiz)) rows.push_back(row);
    return rows;
  };

  // With no further answer, the engine replaces what it holds of the rebuilt quizzes: its
  // leaderboards agree with the table (the damaged quiz's memory was damaged too).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  auto all_agree = [&] {
    for (const QuizDef& q : w.quizzes)
      if (memory_rows(q.quiz_id) != stored_rows(q.quiz_id)) return false;
    return true;
  };
  while (!all_agree() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (const QuizDef& q : w.quizzes)
    EXPECT_EQ(memory_rows(q.quiz_id), stored_rows(q.quiz_id))
        << "quiz " << q.quiz_id << " after the replay, before any further answer";
  EXPECT_GE(
      e->metrics().batches.replay_refreshes.load() + e->metrics().batches.stale_reloads.load(), 1);

  send(*e, part3, 30, 4, 3, t);  // after it: every quiz was rebuilt, the engine must reload
  EXPECT_EQ(t.request_errors.load(), 0);
  EXPECT_EQ(t.rejected.load(), 0) << "answers were refused during the replay";
  EXPECT_EQ(t.accepted.load(), static_cast<int64_t>(w.distinct_valid));
  EXPECT_GE(e->metrics().batches.stale_reloads.load(), 1);
  EXPECT_EQ(db_standings(db), expected_rows(w));
  // The engine's leaderboards agree with the table once each quiz had a batch after the rebuild.
  for (const QuizDef& q : w.quizzes)
    EXPECT_EQ(memory_rows(q.quiz_id), stored_rows(q.quiz_id)) << "quiz " << q.quiz_id;
  e->stop();
}

}  // namespace
}  // namespace quizflow::testing
