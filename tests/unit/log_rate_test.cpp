// LogRate (core/log_rate.h): one line per interval, the interval doubling while a failure goes
// on (an outage's log stays short), starting over after a quiet interval.
#include "core/log_rate.h"

#include <gtest/gtest.h>

#include <vector>

namespace quizflow {
namespace {

// The times (ms) at which a line is written when one is asked for every `step` ms up to `end`.
std::vector<int64_t> written(LogRate& rate, int64_t from, int64_t end, int64_t step,
                             std::vector<int64_t>* held = nullptr) {
  std::vector<int64_t> out;
  for (int64_t t = from; t <= end; t += step) {
    int64_t more = -1;
    if (rate.allow_at(t, more)) {
      out.push_back(t);
      if (held) held->push_back(more);
    }
  }
  return out;
}

TEST(LogRate, AnOutageLogsAtDoublingIntervalsUpToTheCap) {
  LogRate rate(1000, 8000);
  std::vector<int64_t> held;
  const auto lines = written(rate, 100000, 140000, 100, &held);
  EXPECT_EQ(lines,
            (std::vector<int64_t>{100000, 101000, 103000, 107000, 115000, 123000, 131000, 139000}));
  // Each line says how many were held back since the one before.
  ASSERT_EQ(held.size(), lines.size());
  EXPECT_EQ(held[0], 0);
  EXPECT_EQ(held[1], 9);
  EXPECT_EQ(held[2], 19);
  EXPECT_EQ(held[3], 39);
}

TEST(LogRate, StartsOverAfterAQuietInterval) {
  LogRate rate(1000, 30000);
  int64_t more = 0;
  ASSERT_TRUE(rate.allow_at(0, more));
  ASSERT_TRUE(rate.allow_at(1000, more));  // interval now 2000: next at 3000
  EXPECT_FALSE(rate.allow_at(2999, more));
  ASSERT_TRUE(rate.allow_at(3000, more));  // interval 4000: next at 7000
  // Nothing asked for between 7000 and 11000 (a whole interval): the next failure is news.
  ASSERT_TRUE(rate.allow_at(11000, more));
  EXPECT_EQ(more, 0);
  EXPECT_FALSE(rate.allow_at(11999, more));
  EXPECT_TRUE(rate.allow_at(12000, more));  // back to the 1 s interval
}

TEST(LogRate, WithoutAMaximumTheIntervalStaysFixed) {
  LogRate rate(500, 500);
  const auto lines = written(rate, 0, 2000, 50);
  EXPECT_EQ(lines, (std::vector<int64_t>{0, 500, 1000, 1500, 2000}));
}

}  // namespace
}  // namespace quizflow
