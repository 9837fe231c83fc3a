// Request completion: the done callback fires exactly once, when every armed item is resolved or
// the request fails.
#include "core/request.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace quizflow {
namespace {

struct Counter {
  std::atomic<int> calls{0};
  Request::DoneFn fn() {
    return [this](Request&) { calls.fetch_add(1); };
  }
};

std::unique_ptr<Request> make(Counter& c, size_t items) {
  auto r = std::make_unique<Request>("body", c.fn());
  r->items.resize(items);
  return r;
}

TEST(Request, DoneFiresOnceAfterArmAndEveryResolve) {
  Counter c;
  auto r = make(c, 3);
  r->arm(3);
  EXPECT_EQ(c.calls, 0);
  EXPECT_FALSE(r->finished());
  r->resolve(0, Verdict{ItemStatus::accepted, "", "", ""});
  r->resolve(2, Verdict::reject("unknown_quiz", "no such quiz", "quiz_id"));
  EXPECT_EQ(c.calls, 0);
  EXPECT_FALSE(r->finished());
  r->resolve(1, Verdict{ItemStatus::duplicate, "", "", ""});
  EXPECT_EQ(c.calls, 1);
  EXPECT_TRUE(r->finished());
  EXPECT_EQ(r->items[0].verdict.status, ItemStatus::accepted);
  EXPECT_EQ(r->items[1].verdict.status, ItemStatus::duplicate);
  EXPECT_EQ(r->items[2].verdict.code, "unknown_quiz");
  EXPECT_EQ(r->items[2].verdict.field, "quiz_id");
}

TEST(Request, VerdictsAreVisibleInTheCallback) {
  std::vector<ItemStatus> seen;
  Request r("", [&](Request& req) {
    for (const auto& it : req.items) seen.push_back(it.verdict.status);
  });
  r.items.resize(2);
  r.arm(2);
  r.resolve(1, Verdict::reject("schema", "bad", "x"));
  r.resolve(0, Verdict{ItemStatus::accepted, "", "", ""});
  EXPECT_EQ(seen, (std::vector<ItemStatus>{ItemStatus::accepted, ItemStatus::rejected}));
}

TEST(Request, ArmZeroFiresAtOnce) {
  Counter c;
  auto r = make(c, 0);
  r->arm(0);
  EXPECT_EQ(c.calls, 1);
  EXPECT_TRUE(r->finished());
}

TEST(Request, ArmCountsOnlyTheItemsStillToBeResolved) {
  // What ingest does today: a schema reject gets its verdict directly (no resolve()), and arm()
  // counts only the items that decoded; the request completes when those are resolved.
  Counter c;
  auto r = make(c, 3);
  r->items[0].verdict = Verdict::reject("schema", "bad", "user_id");
  r->arm(2);  // items 1 and 2 are pending
  r->resolve(1, Verdict{ItemStatus::accepted, "", "", ""});
  EXPECT_EQ(c.calls, 0);
  r->resolve(2, Verdict{ItemStatus::accepted, "", "", ""});
  EXPECT_EQ(c.calls, 1);
  EXPECT_TRUE(r->finished());
}

TEST(Request, ResolvesBeforeArmAreCountedAfterIt) {
  // A stage resolves items of a request before ingest has called arm() (the items travel ahead
  // of the arming): those resolves must not complete the request, arm(n) must count them among
  // its n items, and the completion fires exactly once, when the last item is resolved.
  std::vector<size_t> pending_at_done;  // items still pending when the completion ran
  int calls = 0;
  Request r("body", [&](Request& req) {
    ++calls;
    for (size_t i = 0; i < req.items.size(); ++i)
      if (req.items[i].verdict.status == ItemStatus::pending) pending_at_done.push_back(i);
  });
  r.items.resize(4);
  r.resolve(0, Verdict::reject("schema", "bad", "user_id"));
  r.resolve(2, Verdict{ItemStatus::duplicate, "", "", ""});
  EXPECT_EQ(calls, 0) << "a resolve before arm() completed the request";
  EXPECT_FALSE(r.finished()) << "a resolve before arm() completed the request";
  r.arm(4);  // all four items, the two already resolved included
  EXPECT_EQ(calls, 0) << "arm() completed a request with two items pending";
  EXPECT_FALSE(r.finished());
  r.resolve(3, Verdict{ItemStatus::accepted, "", "", ""});
  EXPECT_EQ(calls, 0) << "completed with item 1 still pending";
  EXPECT_FALSE(r.finished());
  r.resolve(1, Verdict{ItemStatus::accepted, "", "", ""});
  EXPECT_EQ(calls, 1) << "the completion must fire once, after the last item";
  EXPECT_TRUE(r.finished());
  EXPECT_TRUE(pending_at_done.empty())
      << "the completion saw " << pending_at_done.size() << " item(s) still pending";
  EXPECT_EQ(r.items[0].verdict.code, "schema");
  EXPECT_EQ(r.items[2].verdict.status, ItemStatus::duplicate);
}

TEST(Request, EveryItemResolvedBeforeArmCompletesAtArm) {
  // Every item was resolved before arm(): the completion fires exactly once, from arm().
  Counter c;
  auto r = make(c, 2);
  r->resolve(1, Verdict{ItemStatus::accepted, "", "", ""});
  r->resolve(0, Verdict{ItemStatus::accepted, "", "", ""});
  EXPECT_EQ(c.calls, 0) << "resolves before arm() completed the request";
  r->arm(2);
  EXPECT_EQ(c.calls, 1);
  EXPECT_TRUE(r->finished());
}

TEST(Request, FailFiresOnceAndClearsItems) {
  Counter c;
  auto r = make(c, 4);
  r->fail(RequestError{503, "overloaded", "try later", ""});
  EXPECT_EQ(c.calls, 1);
  EXPECT_TRUE(r->finished());
  ASSERT_TRUE(r->error.has_value());
  EXPECT_EQ(r->error->http_status, 503);
  EXPECT_EQ(r->error->code, "overloaded");
  EXPECT_TRUE(r->items.empty());
  r->fail(RequestError{500, "again", "", ""});
  EXPECT_EQ(c.calls, 1);
}

TEST(Request, NothingFiresTwiceAfterCompletion) {
  Counter c;
  auto r = make(c, 1);
  r->arm(1);
  r->resolve(0, Verdict{ItemStatus::accepted, "", "", ""});
  ASSERT_EQ(c.calls, 1);
  r->fail(RequestError{500, "late", "", ""});
  EXPECT_EQ(c.calls, 1);
}

TEST(Request, NoCallbackIsFine) {
  Request r("", nullptr);
  r.items.resize(1);
  r.arm(1);
  r.resolve(0, Verdict{ItemStatus::accepted, "", "", ""});
  EXPECT_TRUE(r.finished());
  Request f("", nullptr);
  f.fail(RequestError{400, "x", "", ""});
  EXPECT_TRUE(f.finished());
}

TEST(Request, ConcurrentResolvesFireExactlyOnce) {
  for (int round = 0; round < 200; ++round) {
    Counter c;
    constexpr size_t kItems = 64;
    auto r = std::make_shared<Request>("", c.fn());
    r->items.resize(kItems);
    r->arm(kItems);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < 4; ++t) {
      threads.emplace_back([r, t] {
        for (size_t i = t; i < kItems; i += 4)
          r->resolve(i, Verdict{ItemStatus::accepted, "", "", ""});
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_EQ(c.calls, 1) << "round " << round;
    for (const auto& it : r->items) ASSERT_EQ(it.verdict.status, ItemStatus::accepted);
  }
}

TEST(Request, EventIdOfAnItem) {
  Item decoded;
  decoded.event = AnswerEvent{};
  decoded.event->event_id = "from-event";
  decoded.echo_id = "ignored";
  EXPECT_EQ(decoded.event_id(), "from-event");
  Item rejected;
  rejected.echo_id = "echo";
  EXPECT_EQ(rejected.event_id(), "echo");
  EXPECT_STREQ(to_string(ItemStatus::pending), "pending");
  EXPECT_STREQ(to_string(ItemStatus::accepted), "accepted");
  EXPECT_STREQ(to_string(ItemStatus::duplicate), "duplicate");
  EXPECT_STREQ(to_string(ItemStatus::rejected), "rejected");
}

}  // namespace
}  // namespace quizflow
