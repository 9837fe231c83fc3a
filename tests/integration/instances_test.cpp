// Several engines on one database (scale-out, issue 12): a quiz created through one is learnt
// by another from PostgreSQL; a quiz closed through one is closed and finalized in the other
// too, and its rewards are granted once; an engine that does not hold a quiz answers its reads
// from PostgreSQL, equal to the engine that scores it.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>
#include <tuple>
#include <vector>

#include "egress/pg_store.h"
#include "pipeline/engine.h"
#include "support/test_db.h"
#include "unit/test_util.h"

namespace quizflow::testing {
namespace {

std::unique_ptr<Engine> engine_on(const TestDatabase& db) {
  auto e = std::make_unique<Engine>(
      test_config(db.url()), std::make_unique<egress::PgStore>(egress::PoolOptions{db.url()}),
      std::make_unique<CountingSink>());
  if (Status st = e->start(); !st.ok()) throw std::runtime_error(st.to_string());
  return e;
}

QuizDef open_quiz(int64_t id) {
  QuizDef q;
  q.quiz_id = id;
  q.title = "instances";
  q.opens_at_ms = 0;
  q.closes_at_ms = 4102444800000;
  q.questions = {Question{1, 4, 2, 1000, 20000}};
  q.rewards = {RewardTier{1, 1, "gold"}};
  return q;
}

std::string answer(int64_t quiz, int64_t user, const std::string& id) {
  return test::cat(R"({"event_id":")", id, R"(","quiz_id":)", quiz, R"(,"user_id":)", user,
                   R"(,"question_id":1,"option_id":2,"answered_at":"2026-06-01T00:00:00Z",)",
                   R"("elapsed_ms":10})");
}

ItemStatus status_of(Engine& e, const std::string& body, std::string* code = nullptr) {
  const Answered a = submit_and_wait(e, body);
  if (a.error || a.items.empty()) return ItemStatus::pending;
  if (code) *code = a.items[0].verdict.code;
  return a.items[0].verdict.status;
}

TEST(Instances, AQuizCreatedOrClosedThroughOneIsKnownToTheOther) {
  TestDatabase db;
  auto a = engine_on(db);
  auto b = engine_on(db);
  const QuizDef q = open_quiz(42);
  ASSERT_TRUE(a->create_quiz(q).ok());
  // b learns it from PostgreSQL (as its Kafka source does on a quiz it does not know).
  std::string code;
  EXPECT_EQ(status_of(*b, answer(42, 1, "x1"), &code), ItemStatus::rejected);
  EXPECT_EQ(code, "unknown_quiz");
  ASSERT_TRUE(b->learn_quiz(42).ok());
  EXPECT_EQ(status_of(*b, answer(42, 1, "x1")), ItemStatus::accepted);
  EXPECT_EQ(status_of(*a, answer(42, 2, "x2")), ItemStatus::accepted);
  // Closed through a: a finalizes it; b takes it up within a few seconds and refuses answers.
  ASSERT_TRUE(a->close_quiz(42).ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  const auto finalized = [&] {
    return db.query("SELECT state FROM quizzes WHERE quiz_id = 42") ==
           std::vector<std::vector<std::string>>{{"finalized"}};
  };
  // (b learns the close within a second; an answer it took before is stored but not in the
  // final standings — docs/operations.md — so the final standings are read after that.)
  while (!finalized() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(finalized());
  ItemStatus late = ItemStatus::accepted;
  while (std::chrono::steady_clock::now() < deadline) {
    late = status_of(*b, answer(42, 3, "x3"), &code);
    if (late == ItemStatus::rejected) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(late, ItemStatus::rejected) << "b still accepts answers of a quiz closed through a";
  EXPECT_TRUE(code == "quiz_not_open" || code == "quiz_finalized") << code;
  // Finalized once: one reward row; the final standings hold the two answers a and b stored
  // before the close.
  EXPECT_EQ(db.query("SELECT count(*) FROM rewards WHERE quiz_id = 42"),
            (std::vector<std::vector<std::string>>{{"1"}}));
  EXPECT_EQ(db.query("SELECT count(*) FROM final_standings WHERE quiz_id = 42"),
            (std::vector<std::vector<std::string>>{{"2"}}));
  b->stop();
  a->stop();
}

std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>> entries_of(
    const LeaderboardPage& p) {
  std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>> out;
  for (const auto& e : p.entries)
    out.emplace_back(e.rank, e.user_id, e.standing.score, e.standing.correct, e.standing.time_ms);
  return out;
}

// The reads behind a load balancer (compose's replicas in Kafka mode): b never saw quiz 43 —
// a scored it — and answers the quiz, its leaderboard, a player and its rewards as a does.
TEST(Instances, AnEngineThatDoesNotHoldAQuizReadsItFromPostgreSQL) {
  TestDatabase db;
  auto a = engine_on(db);
  auto b = engine_on(db);
  QuizDef q = open_quiz(43);
  q.questions.push_back(Question{2, 4, 1, 1000, 20000});
  ASSERT_TRUE(a->create_quiz(q).ok());
  for (int user = 1; user <= 12; ++user)
    for (int question = 1; question <= 2; ++question)
      ASSERT_EQ(status_of(*a, test::cat(R"({"event_id":"r)", user, "-", question,
                                        R"(","quiz_id":43,"user_id":)", user, R"(,"question_id":)",
                                        question, R"(,"option_id":)", (user + question) % 3,
                                        R"(,"answered_at":")", "2026-06-01T00:00:00Z",
                                        R"(","elapsed_ms":)", 100 * user, "}")),
                ItemStatus::accepted);

  auto qa = a->quiz(43), qb = b->quiz(43);
  ASSERT_TRUE(qa.ok() && qb.ok() && qa->has_value() && qb->has_value());
  EXPECT_EQ((*qb)->state, QuizState::open);
  EXPECT_EQ((*qb)->def.questions.size(), 2u);
  for (const auto& [offset, limit] :
       std::vector<std::pair<size_t, size_t>>{{0, 100}, {3, 4}, {11, 5}, {20, 5}}) {
    auto la = a->leaderboard(43, offset, limit), lb = b->leaderboard(43, offset, limit);
    ASSERT_TRUE(la.ok() && lb.ok() && la->has_value() && lb->has_value());
    EXPECT_EQ((*lb)->total, 12);
    EXPECT_EQ(entries_of(**lb), entries_of(**la)) << "offset " << offset << " limit " << limit;
  }
  for (int64_t user : {1, 7, 12, 99}) {
    auto pa = a->player(43, user), pb = b->player(43, user);
    ASSERT_TRUE(pa.ok() && pb.ok() && pa->has_value() && pb->has_value());
    ASSERT_EQ(pb->value().has_value(), pa->value().has_value()) << user;
    if (pa->value()) {
      EXPECT_EQ(pb->value()->rank, pa->value()->rank) << user;
      EXPECT_EQ(pb->value()->standing, pa->value()->standing) << user;
    }
  }
  auto rb = b->rewards(43);
  ASSERT_TRUE(rb.ok() && rb->has_value());
  EXPECT_TRUE((*rb)->empty());
  // b's reads took nothing into memory: it never holds a quiz another instance scores.
  EXPECT_EQ(b->quiz_counts().in_memory, 0);
  // Unknown to both: no such quiz.
  auto none = b->leaderboard(44, 0, 10);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  // Finalized through a: b reads the final standings and the rewards.
  ASSERT_TRUE(a->close_quiz(43).ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  // (b reads the stored state, which says finalized as soon as the finalization committed; a
  // marks it in its catalog a moment later, after the transaction came back to it.)
  const auto finalized_in = [](Engine& e) {
    auto v = e.quiz(43);
    return v.ok() && v->has_value() && (*v)->state == QuizState::finalized;
  };
  while (std::chrono::steady_clock::now() < deadline && !(finalized_in(*b) && finalized_in(*a)))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(finalized_in(*b));
  ASSERT_TRUE(finalized_in(*a));
  rb = b->rewards(43);
  auto ra = a->rewards(43);
  ASSERT_TRUE(rb.ok() && ra.ok() && rb->has_value() && ra->has_value());
  ASSERT_EQ((*rb)->size(), 1u);
  ASSERT_EQ((*ra)->size(), 1u);
  EXPECT_EQ((*rb)->at(0).user_id, (*ra)->at(0).user_id);
  auto la = a->leaderboard(43, 0, 100), lb = b->leaderboard(43, 0, 100);
  ASSERT_TRUE(la.ok() && lb.ok() && la->has_value() && lb->has_value());
  EXPECT_EQ(entries_of(**lb), entries_of(**la));
  b->stop();
  a->stop();
}

}  // namespace
}  // namespace quizflow::testing
