// The batch stage's flush policy (spec §2): size, delay, one batch in flight per quiz, close and
// force, and the pending/in-flight counters.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "stages/batch.h"

namespace quizflow::stages {
namespace {

// "e<n>", built by appending: GCC 12 at -O3 reports a false -Wrestrict inside libstdc++ for
// `"e" + std::to_string(n)` (operator+(const char*, string&&) prepends in place; GCC PR 105329),
// which fails the Release build under -Werror.
std::string event_id(int n) {
  std::string s = "e";
  s += std::to_string(n);
  return s;
}

// Makes one event of `quiz`; its event_id is a running number so arrival order can be checked.
class Events {
 public:
  EventRef make(int64_t quiz) {
    auto r = std::make_shared<Request>("", nullptr);
    Item item;
    AnswerEvent e;
    e.event_id = event_id(next_++);
    e.quiz_id = quiz;
    e.user_id = 1;
    e.question_id = 1;
    item.event = e;
    r->items.push_back(std::move(item));
    return EventRef{r, 0};
  }
  std::string last_id() const { return event_id(next_ - 1); }

 private:
  int next_ = 0;
};

std::vector<std::string> ids(const QuizBatch& b) {
  std::vector<std::string> out;
  for (const auto& e : b.events) out.push_back(e.event().event_id);
  return out;
}

std::vector<std::string> range_ids(int from, int to) {  // e<from> .. e<to-1>
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(event_id(i));
  return out;
}

std::map<int64_t, QuizBatch> by_quiz(std::vector<QuizBatch> batches) {
  std::map<int64_t, QuizBatch> out;
  for (auto& b : batches) {
    EXPECT_FALSE(out.count(b.quiz_id)) << "two batches of quiz " << b.quiz_id;
    out[b.quiz_id] = std::move(b);
  }
  return out;
}

TEST(BatchPolicy, SizeReachedFlushesAtOnce) {
  BatchBuffers buf(BatchPolicy{3, 1000});
  Events ev;
  buf.add(ev.make(1), 0);
  buf.add(ev.make(1), 0);
  EXPECT_TRUE(buf.take_due(0).empty());
  EXPECT_EQ(buf.pending_events(), 2u);
  buf.add(ev.make(1), 0);
  EXPECT_EQ(buf.pending_events(), 3u);
  auto out = buf.take_due(0);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].quiz_id, 1);
  EXPECT_EQ(ids(out[0]), range_ids(0, 3));
  EXPECT_EQ(buf.pending_events(), 0u);
  EXPECT_EQ(buf.in_flight_batches(), 1u);
}

TEST(BatchPolicy, UnderSizeWaitsForMaxDelayFromTheFirstEvent) {
  BatchBuffers buf(BatchPolicy{100, 50});
  Events ev;
  buf.add(ev.make(1), 1000);
  buf.add(ev.make(1), 1040);  // a later event does not restart the clock
  EXPECT_TRUE(buf.take_due(1000).empty());
  EXPECT_TRUE(buf.take_due(1049).empty());
  EXPECT_EQ(buf.oldest_wait_ms(1049), 49);
  auto out = buf.take_due(1050);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(ids(out[0]), range_ids(0, 2));
  EXPECT_EQ(buf.pending_events(), 0u);
  EXPECT_EQ(buf.oldest_wait_ms(2000), 0);
}

TEST(BatchPolicy, ZeroDelayFlushesImmediately) {
  BatchBuffers buf(BatchPolicy{100, 0});
  Events ev;
  buf.add(ev.make(1), 5);
  auto out = buf.take_due(5);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].events.size(), 1u);
}

TEST(BatchPolicy, NothingDueWhenEmpty) {
  BatchBuffers buf(BatchPolicy{1, 0});
  EXPECT_TRUE(buf.take_due(0).empty());
  EXPECT_TRUE(buf.take_due(1 << 30, true).empty());
  EXPECT_EQ(buf.pending_events(), 0u);
  EXPECT_EQ(buf.in_flight_batches(), 0u);
}

TEST(BatchPolicy, OneBatchInFlightPerQuiz) {
  BatchBuffers buf(BatchPolicy{2, 0});
  Events ev;
  buf.add(ev.make(1), 0);
  buf.add(ev.make(1), 0);
  auto first = buf.take_due(0);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(ids(first[0]), range_ids(0, 2));

  // While it commits, events keep buffering and nothing of quiz 1 is taken, however due.
  for (int i = 0; i < 3; ++i) buf.add(ev.make(1), 10);
  EXPECT_EQ(buf.pending_events(), 3u);
  EXPECT_TRUE(buf.take_due(10000).empty());
  EXPECT_TRUE(buf.take_due(10000, true).empty());
  EXPECT_EQ(buf.in_flight_batches(), 1u);

  buf.done(1);
  EXPECT_EQ(buf.in_flight_batches(), 0u);
  auto second = buf.take_due(10);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(ids(second[0]), range_ids(2, 4));  // at most max_size, oldest first
  EXPECT_EQ(buf.pending_events(), 1u);
  EXPECT_TRUE(buf.take_due(10000).empty());
  buf.done(1);
  auto third = buf.take_due(10);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(ids(third[0]), range_ids(4, 5));
  EXPECT_EQ(buf.pending_events(), 0u);
  buf.done(1);
  EXPECT_EQ(buf.in_flight_batches(), 0u);
}

TEST(BatchPolicy, TakesAtMostMaxSizePerBatch) {
  BatchBuffers buf(BatchPolicy{4, 1000});
  Events ev;
  for (int i = 0; i < 10; ++i) buf.add(ev.make(7), 0);
  auto a = buf.take_due(0);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(ids(a[0]), range_ids(0, 4));
  EXPECT_EQ(buf.pending_events(), 6u);
  buf.done(7);
  auto b = buf.take_due(0);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(ids(b[0]), range_ids(4, 8));
  buf.done(7);
  // Two left: under size and not yet waited max_delay.
  EXPECT_TRUE(buf.take_due(999).empty());
  auto c = buf.take_due(1000);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(ids(c[0]), range_ids(8, 10));
}

TEST(BatchPolicy, DelayOfLeftoversCountsFromTheirOwnArrival) {
  BatchBuffers buf(BatchPolicy{2, 100});
  Events ev;
  buf.add(ev.make(1), 0);
  buf.add(ev.make(1), 0);
  buf.add(ev.make(1), 60);
  ASSERT_EQ(buf.take_due(0).size(), 1u);
  buf.done(1);
  EXPECT_TRUE(buf.take_due(159).empty());
  auto out = buf.take_due(160);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(ids(out[0]), range_ids(2, 3));
}

TEST(BatchPolicy, CloseFlushesEarly) {
  BatchBuffers buf(BatchPolicy{100, 1000});
  Events ev;
  buf.add(ev.make(1), 0);
  buf.add(ev.make(2), 0);
  buf.close(1);
  auto out = buf.take_due(1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].quiz_id, 1);
  EXPECT_EQ(buf.pending_events(), 1u);  // quiz 2 still waits
}

TEST(BatchPolicy, CloseWhileInFlightFlushesTheRestRightAfterDone) {
  BatchBuffers buf(BatchPolicy{2, 1000});
  Events ev;
  for (int i = 0; i < 5; ++i) buf.add(ev.make(3), 0);
  ASSERT_EQ(buf.take_due(0).size(), 1u);
  buf.close(3);
  EXPECT_TRUE(buf.take_due(1).empty());  // still in flight
  buf.done(3);
  auto a = buf.take_due(1);  // closing: no waiting for max_delay, but still max_size at most
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(ids(a[0]), range_ids(2, 4));
  buf.done(3);
  auto b = buf.take_due(1);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(ids(b[0]), range_ids(4, 5));
  EXPECT_EQ(buf.pending_events(), 0u);
}

TEST(BatchPolicy, CloseOfAnEmptyQuizTakesNothing) {
  BatchBuffers buf(BatchPolicy{100, 1000});
  buf.close(9);
  EXPECT_TRUE(buf.take_due(0).empty());
  EXPECT_TRUE(buf.take_due(0, true).empty());
  EXPECT_EQ(buf.in_flight_batches(), 0u);
}

TEST(BatchPolicy, ForceFlushesEverythingNotInFlight) {
  BatchBuffers buf(BatchPolicy{2, 100000});
  Events ev;
  buf.add(ev.make(1), 0);
  buf.add(ev.make(1), 0);
  ASSERT_EQ(buf.take_due(0).size(), 1u);  // quiz 1 in flight
  buf.add(ev.make(1), 0);                 // e2
  buf.add(ev.make(2), 0);                 // e3
  buf.add(ev.make(3), 0);                 // e4
  buf.add(ev.make(3), 0);                 // e5
  buf.add(ev.make(3), 0);                 // e6
  auto out = by_quiz(buf.take_due(0, true));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(ids(out.at(2)), range_ids(3, 4));
  EXPECT_EQ(ids(out.at(3)), range_ids(4, 6));  // max_size still applies
  EXPECT_FALSE(out.count(1));
  EXPECT_EQ(buf.pending_events(), 2u);  // e2 (quiz 1 in flight) and e6
  EXPECT_EQ(buf.in_flight_batches(), 3u);
}

TEST(BatchPolicy, ManyQuizzesAreIndependent) {
  const size_t kMax = 3;
  BatchBuffers buf(BatchPolicy{kMax, 100});
  Events ev;
  std::map<int64_t, std::vector<std::string>> added;
  for (int64_t q = 1; q <= 50; ++q) {
    for (int64_t i = 0; i < q % 5 + 1; ++i) {
      buf.add(ev.make(q), 0);
      added[q].push_back(ev.last_id());
    }
  }
  EXPECT_EQ(buf.pending_events(), 150u);
  // At once: only the quizzes with >= 3 events (q % 5 in {2,3,4}), 3 events each.
  auto now = by_quiz(buf.take_due(0));
  EXPECT_EQ(now.size(), 30u);
  for (int64_t q = 1; q <= 50; ++q) {
    const bool due = q % 5 + 1 >= 3;
    ASSERT_EQ(now.count(q) == 1, due) << q;
    if (due) {
      EXPECT_EQ(ids(now.at(q)),
                std::vector<std::string>(added[q].begin(), added[q].begin() + kMax));
    }
  }
  EXPECT_EQ(buf.in_flight_batches(), 30u);
  // Finishing one quiz's batch does not release another's.
  buf.done(3);
  EXPECT_EQ(buf.in_flight_batches(), 29u);
  auto after = by_quiz(buf.take_due(100));
  // Due by delay: every quiz not in flight with pending events: quizzes with 1-2 events (20 of
  // them) and quiz 3 (3 % 5 + 1 = 4 events, one left).
  EXPECT_EQ(after.size(), 21u);
  EXPECT_TRUE(after.count(3));
  EXPECT_FALSE(after.count(4));  // in flight, its leftover 2 events wait
  EXPECT_EQ(ids(after.at(3)), std::vector<std::string>{added[3].back()});
  // Left: one event of each other 4-event quiz (9) and two of each 5-event quiz (10 x 2).
  EXPECT_EQ(buf.pending_events(), 29u);
}

TEST(BatchPolicy, DoneWithoutABatchInFlightIsHarmless) {
  BatchBuffers buf(BatchPolicy{1, 0});
  Events ev;
  buf.done(1);
  buf.add(ev.make(1), 0);
  buf.done(1);  // nothing in flight yet
  EXPECT_EQ(buf.in_flight_batches(), 0u);
  EXPECT_EQ(buf.pending_events(), 1u);
  ASSERT_EQ(buf.take_due(0).size(), 1u);
  EXPECT_EQ(buf.in_flight_batches(), 1u);
  buf.done(1);
  buf.done(1);  // twice
  EXPECT_EQ(buf.in_flight_batches(), 0u);
  buf.add(ev.make(1), 0);
  EXPECT_EQ(buf.take_due(0).size(), 1u);
  EXPECT_EQ(buf.in_flight_batches(), 1u);
}

TEST(BatchPolicy, OldestWaitAcrossQuizzes) {
  BatchBuffers buf(BatchPolicy{100, 1000});
  Events ev;
  EXPECT_EQ(buf.oldest_wait_ms(500), 0);
  buf.add(ev.make(1), 100);
  buf.add(ev.make(2), 40);
  buf.add(ev.make(2), 300);
  EXPECT_EQ(buf.oldest_wait_ms(500), 460);
}

TEST(BatchPolicy, EventBudgetTakesTheLongestWaitingQuizzesFirst) {
  BatchBuffers buf(BatchPolicy{4, 10});
  Events ev;
  buf.add(ev.make(3), 30);  // e0
  buf.add(ev.make(1), 10);  // e1
  buf.add(ev.make(1), 11);  // e2
  buf.add(ev.make(2), 20);  // e3
  buf.add(ev.make(2), 21);  // e4
  buf.add(ev.make(2), 22);  // e5
  // All three are due at 100; a budget of 4 takes quiz 1 (oldest) whole, then 2 of quiz 2's 3.
  auto out = buf.take_due(100, false, 4);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].quiz_id, 1);
  EXPECT_EQ(ids(out[0]), (std::vector<std::string>{"e1", "e2"}));
  EXPECT_EQ(out[1].quiz_id, 2);
  EXPECT_EQ(ids(out[1]), (std::vector<std::string>{"e3", "e4"}));
  EXPECT_EQ(buf.pending_events(), 2u);
  EXPECT_EQ(buf.in_flight_batches(), 2u);
  // Quiz 2 is in flight: its last event waits; quiz 3 goes next.
  auto next = buf.take_due(100, false, 4);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(ids(next[0]), (std::vector<std::string>{"e0"}));
  buf.done(2);
  auto last = buf.take_due(100, false, 4);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(ids(last[0]), (std::vector<std::string>{"e5"}));
  EXPECT_EQ(buf.pending_events(), 0u);
  // A budget of 0 takes nothing, even when forced and something is pending.
  buf.done(1);
  buf.done(3);
  buf.add(ev.make(1), 100);
  EXPECT_TRUE(buf.take_due(1000, true, 0).empty());
  EXPECT_EQ(buf.pending_events(), 1u);
  EXPECT_EQ(buf.take_due(1000, true, 1).size(), 1u);
}

TEST(BatchPolicy, EventBudgetDoesNotMakeUndueQuizzesDue) {
  BatchBuffers buf(BatchPolicy{100, 50});
  Events ev;
  buf.add(ev.make(1), 0);
  buf.add(ev.make(2), 40);
  auto out = buf.take_due(60, false, 1000);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].quiz_id, 1);
  EXPECT_EQ(buf.pending_events(), 1u);
}

// Random interleavings of add/take/done/close: every event is taken exactly once, in arrival
// order within its quiz; batches never exceed max_size; never two batches of a quiz in flight;
// the counters match a model.
TEST(BatchPolicy, RandomScheduleConservesEventsAndOrder) {
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    const size_t max_size = 1 + rng() % 8;
    const int64_t max_delay = static_cast<int64_t>(rng() % 20);
    BatchBuffers buf(BatchPolicy{max_size, max_delay});
    Events ev;
    std::map<int64_t, std::vector<std::string>> added, taken;
    std::set<int64_t> in_flight;
    size_t pending = 0;
    int64_t now = 0;
    for (int step = 0; step < 3000; ++step) {
      now += static_cast<int64_t>(rng() % 3);
      const int op = static_cast<int>(rng() % 10);
      if (op < 6) {
        const int64_t q = 1 + static_cast<int64_t>(rng() % 6);
        buf.add(ev.make(q), now);
        added[q].push_back(ev.last_id());
        ++pending;
      } else if (op < 8) {
        const bool force = rng() % 5 == 0;
        const size_t budget = rng() % 3 == 0 ? 1 + rng() % 10 : SIZE_MAX;
        size_t took = 0;
        for (auto& b : buf.take_due(now, force, budget)) {
          took += b.events.size();
          ASSERT_LE(took, budget);
          ASSERT_FALSE(in_flight.count(b.quiz_id)) << "second batch in flight for a quiz";
          ASSERT_FALSE(b.events.empty());
          ASSERT_LE(b.events.size(), max_size);
          in_flight.insert(b.quiz_id);
          for (const auto& e : b.events) {
            ASSERT_EQ(e.event().quiz_id, b.quiz_id);
            taken[b.quiz_id].push_back(e.event().event_id);
          }
          pending -= b.events.size();
        }
      } else if (op < 9) {
        if (!in_flight.empty()) {
          auto it = in_flight.begin();
          std::advance(it, static_cast<long>(rng() % in_flight.size()));
          buf.done(*it);
          in_flight.erase(it);
        }
      } else {
        buf.close(1 + static_cast<int64_t>(rng() % 6));
      }
      ASSERT_EQ(buf.pending_events(), pending);
      ASSERT_EQ(buf.in_flight_batches(), in_flight.size());
    }
    // Drain, with a small budget per call (the engine passes BATCH_MAX_SIZE).
    for (int round = 0; round < 100000 && pending > 0; ++round) {
      for (int64_t q : in_flight) buf.done(q);
      in_flight.clear();
      const size_t budget = 1 + rng() % 5;
      size_t took = 0;
      for (auto& b : buf.take_due(now, true, budget)) {
        took += b.events.size();
        ASSERT_LE(took, budget);
        in_flight.insert(b.quiz_id);
        for (const auto& e : b.events) taken[b.quiz_id].push_back(e.event().event_id);
        pending -= b.events.size();
      }
      ASSERT_GT(took, 0u) << "a forced take with a budget left pending events behind";
    }
    EXPECT_EQ(buf.pending_events(), 0u);
    EXPECT_EQ(taken, added);
  }
}

}  // namespace
}  // namespace quizflow::stages
