// The batch stage's flush timer (pipeline/deadline_timer.h): it fires once at the earliest
// deadline armed, an earlier arm replaces a later one, a later arm does not delay an earlier one,
// nothing fires without an arm, and stop() returns without firing what is pending.
#include "pipeline/deadline_timer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>

#include "unit/test_util.h"

namespace quizflow {
namespace {

using namespace std::chrono_literals;
using Clock = DeadlineTimer::Clock;

TEST(DeadlineTimer, FiresOnceAtTheArmedDeadline) {
  std::atomic<int> fired{0};
  DeadlineTimer t([&] { fired.fetch_add(1); });
  const auto armed_at = Clock::now();
  t.arm(armed_at + 20ms);
  ASSERT_TRUE(test::wait_until([&] { return fired.load() == 1; }, 10s));
  EXPECT_GE(Clock::now() - armed_at, 20ms) << "fired before its deadline";
  t.stop();  // joins: no late second firing can follow
  EXPECT_EQ(fired.load(), 1);
}

TEST(DeadlineTimer, AnEarlierArmReplacesALaterOne) {
  std::atomic<int> fired{0};
  DeadlineTimer t([&] { fired.fetch_add(1); });
  t.arm(Clock::now() + 1h);
  t.arm(Clock::now() + 10ms);
  ASSERT_TRUE(test::wait_until([&] { return fired.load() == 1; }, 10s))
      << "the earlier deadline did not wake the timer";
  t.stop();
  EXPECT_EQ(fired.load(), 1) << "the replaced hour-long deadline must not fire";
}

TEST(DeadlineTimer, ALaterArmDoesNotDelayAnEarlierOne) {
  std::atomic<int> fired{0};
  DeadlineTimer t([&] { fired.fetch_add(1); });
  t.arm(Clock::now() + 10ms);
  t.arm(Clock::now() + 1h);
  ASSERT_TRUE(test::wait_until([&] { return fired.load() == 1; }, 10s));
}

TEST(DeadlineTimer, ArmingFromInsideTheCallbackIsNotLost) {
  std::atomic<int> fired{0};
  DeadlineTimer* self = nullptr;
  DeadlineTimer t([&] {
    if (fired.fetch_add(1) == 0) self->arm(Clock::now());  // re-armed while firing
  });
  self = &t;
  t.arm(Clock::now());
  ASSERT_TRUE(test::wait_until([&] { return fired.load() == 2; }, 10s));
}

TEST(DeadlineTimer, StopReturnsWithoutFiringAPendingDeadline) {
  std::atomic<int> fired{0};
  DeadlineTimer t([&] { fired.fetch_add(1); });
  t.arm(Clock::now() + 1h);
  const auto t0 = Clock::now();
  t.stop();
  EXPECT_LT(Clock::now() - t0, 5s) << "stop() waited for the deadline";
  EXPECT_EQ(fired.load(), 0);
  t.stop();  // idempotent
}

TEST(DeadlineTimer, AnExceptionFromTheCallbackDoesNotStopTheTimer) {
  std::atomic<int> fired{0};
  DeadlineTimer t([&] {
    if (fired.fetch_add(1) == 0) throw std::runtime_error("injected");
  });
  t.arm(Clock::now());
  ASSERT_TRUE(test::wait_until([&] { return fired.load() == 1; }, 10s));
  t.arm(Clock::now());
  ASSERT_TRUE(test::wait_until([&] { return fired.load() == 2; }, 10s));
}

}  // namespace
}  // namespace quizflow
