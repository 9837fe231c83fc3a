// Engine::submit racing Engine::stop on a real database (pipeline/engine.h contract): every
// call is admitted, overloaded or stopped; an admitted request's completion runs exactly once
// and before stop() returns; a refused one's never runs; what was answered `accepted` is what
// the database holds once stop() returned.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/time_util.h"
#include "egress/pg_store.h"
#include "support/test_db.h"
#include "unit/test_util.h"

namespace quizflow::testing {
namespace {

QuizDef tiny_quiz(int64_t quiz_id) {
  QuizDef q;
  q.quiz_id = quiz_id;
  q.title = "stop race";
  q.opens_at_ms = *parse_rfc3339_ms("2026-01-01T00:00:00Z");
  q.closes_at_ms = *parse_rfc3339_ms("2027-01-01T00:00:00Z");
  Question qu;
  qu.question_id = 1;
  qu.option_count = 2;
  qu.correct_option = 1;
  q.questions.push_back(qu);
  return q;
}

std::string tiny_body(int64_t quiz, int64_t user, const std::string& id) {
  return "{\"event_id\":\"" + id + "\",\"quiz_id\":" + std::to_string(quiz) +
         ",\"user_id\":" + std::to_string(user) +
         ",\"question_id\":1,\"option_id\":1,\"answered_at\":\"2026-06-01T00:00:00.000Z\","
         "\"elapsed_ms\":10}";
}

// One submit() call and what came of it.
struct Call {
  SubmitResult result = SubmitResult::stopped;
  std::atomic<int> completions{0};
  std::atomic<bool> accepted{false};        // completed with its one item accepted
  std::atomic<bool> answered_other{false};  // completed with something other than accepted
  std::string answer;                       // what it completed with (set before `completions`)
};

TEST(EngineStop, SubmitRacingStopAnswersEveryAdmittedRequestOnceAndLosesNothing) {
  constexpr int kRounds = 20;
  constexpr int kThreads = 4;
  TestDatabase db;
  std::mt19937 rng(11);
  int64_t total_admitted = 0, total_stopped = 0, total_overloaded = 0;
  for (int round = 0; round < kRounds; ++round) {
    const int64_t quiz = 7000 + round;
    Config c = test_config(db.url());
    c.max_in_flight_events = 256;  // small: some calls are refused as overloaded too
    auto engine =
        std::make_unique<Engine>(c, std::make_unique<egress::PgStore>(egress::pool_options(c)),
                                 std::make_unique<CountingSink>());
    const Status st = engine->start();
    ASSERT_TRUE(st.ok()) << st.to_string();
    const auto created = engine->create_quiz(tiny_quiz(quiz));
    ASSERT_TRUE(created.ok()) << created.status().to_string();

    // Calls live until the end of the round (a deque keeps their addresses).
    std::vector<std::deque<Call>> calls(kThreads);
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::atomic<int64_t> completions{0};  // of every call of the round
    std::vector<std::thread> senders;
    for (int t = 0; t < kThreads; ++t) {
      senders.emplace_back([&, t] {
        ready.fetch_add(1);
        while (!go.load()) std::this_thread::yield();
        for (int n = 0;; ++n) {
          Call& call = calls[t].emplace_back();
          std::string id = "r";
          id += std::to_string(round);
          id += '-';
          id += std::to_string(t);
          id += '-';
          id += std::to_string(n);
          call.result = engine->submit(
              tiny_body(quiz, 1 + t * 1000000 + n, id), [&call, &completions](Request& r) {
                const bool ok = !r.error && r.items.size() == 1 &&
                                r.items[0].verdict.status == ItemStatus::accepted;
                if (r.error)
                  call.answer = "request error " + r.error->code + ": " + r.error->message;
                else if (r.items.size() == 1)
                  call.answer = std::string(to_string(r.items[0].verdict.status)) + " " +
                                r.items[0].verdict.code + " " + r.items[0].verdict.message;
                (ok ? call.accepted : call.answered_other).store(true);
                call.completions.fetch_add(1);
                completions.fetch_add(1);
              });
          if (call.result == SubmitResult::stopped) return;
          if (call.result == SubmitResult::overloaded) std::this_thread::yield();
        }
      });
    }
    while (ready.load() < kThreads) std::this_thread::yield();
    go.store(true);
    std::this_thread::sleep_for(
        std::chrono::microseconds(std::uniform_int_distribution<int>(0, 20000)(rng)));
    engine->stop();
    // Every admitted request was admitted before stop() returned (the gate), and stop() drains:
    // their completions have all run by now.
    const int64_t completions_at_stop = completions.load();
    for (auto& s : senders) s.join();
    int64_t admitted = 0, accepted = 0, stopped = 0, overloaded = 0;
    std::vector<std::string> wrong;
    for (int t = 0; t < kThreads; ++t) {
      for (size_t n = 0; n < calls[t].size(); ++n) {
        const Call& call = calls[t][n];
        const std::string where =
            "thread " + std::to_string(t) + " call " + std::to_string(n) + ": ";
        if (call.result == SubmitResult::admitted) {
          ++admitted;
          if (call.completions.load() != 1)
            wrong.push_back(where + "admitted, completed " +
                            std::to_string(call.completions.load()) + " times");
          accepted += call.accepted.load() ? 1 : 0;
          if (call.answered_other.load()) wrong.push_back(where + "answered " + call.answer);
        } else {
          (call.result == SubmitResult::stopped ? stopped : overloaded) += 1;
          if (call.completions.load() != 0) wrong.push_back(where + "refused, yet completed");
        }
      }
    }
    EXPECT_EQ(completions_at_stop, admitted)
        << "round " << round << ": completions still to come when stop() returned";
    EXPECT_EQ(completions.load(), admitted) << "round " << round;
    EXPECT_TRUE(wrong.empty()) << "round " << round << ": " << wrong.size()
                               << " wrong calls, first: " << wrong.front();
    EXPECT_EQ(stopped, kThreads) << "each sender ends on its first `stopped`";
    EXPECT_EQ(
        db.scalar("SELECT count(*) FROM answer_events WHERE quiz_id = " + std::to_string(quiz)),
        accepted)
        << "round " << round << ": stored answers differ from those answered accepted";
    EXPECT_EQ(accepted, admitted) << "round " << round << ": an admitted answer was not accepted";
    total_admitted += admitted;
    total_stopped += stopped;
    total_overloaded += overloaded;
    engine.reset();
    if (HasFailure()) break;
  }
  std::printf("%lld admitted, %lld overloaded, %lld stopped over %d rounds\n",
              static_cast<long long>(total_admitted), static_cast<long long>(total_overloaded),
              static_cast<long long>(total_stopped), kRounds);
}

// /health during a drain (spec §3: 503 while the engine is draining): begin_drain() (SIGTERM)
// makes it unhealthy at once, before anything has stopped, so that a load balancer takes the
// instance out while it finishes; a new start() clears it.
TEST(EngineStop, HealthReportsTheDrainFromItsFirstMoment) {
  TestDatabase db;
  const Config c = test_config(db.url());
  auto engine =
      std::make_unique<Engine>(c, std::make_unique<egress::PgStore>(egress::pool_options(c)),
                               std::make_unique<CountingSink>());
  ASSERT_TRUE(engine->start().ok());
  ASSERT_TRUE(quizflow::test::wait_until([&] { return engine->health().healthy; },
                                         std::chrono::seconds(10)));
  EXPECT_FALSE(engine->health().draining);
  engine->begin_drain();
  const HealthReport h = engine->health();
  EXPECT_FALSE(h.healthy);
  EXPECT_TRUE(h.draining);
  EXPECT_TRUE(h.running);  // still finishing: answers already admitted are committed and answered
  engine->stop();
  EXPECT_FALSE(engine->health().healthy);
  ASSERT_TRUE(engine->start().ok());
  EXPECT_FALSE(engine->health().draining);
  EXPECT_TRUE(quizflow::test::wait_until([&] { return engine->health().healthy; },
                                         std::chrono::seconds(10)));
  engine->stop();
}

}  // namespace
}  // namespace quizflow::testing
