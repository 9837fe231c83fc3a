// points_for (spec §4): points - floor(points * elapsed_ms / (2 * time_limit_ms)), 64-bit.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>

#include "stages/validate.h"

namespace quizflow::stages {
namespace {

// floor(a / b) for a >= 0, b > 0, found by the defining inequality b*f <= a < b*(f+1) with a
// binary search over 128-bit integers (independent of the code's division).
int64_t floor_div(__int128 a, __int128 b) {
  int64_t lo = 0, hi = int64_t{1} << 62;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (b * mid <= a) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

int64_t reference(int64_t points, int64_t elapsed, int64_t limit) {
  return points -
         floor_div(static_cast<__int128>(points) * elapsed, static_cast<__int128>(2) * limit);
}

TEST(Points, ZeroElapsedEarnsFullPoints) {
  EXPECT_EQ(points_for(1000, 0, 20000), 1000);
  EXPECT_EQ(points_for(1, 0, 1000), 1);
  EXPECT_EQ(points_for(100000, 0, 600000), 100000);
  EXPECT_EQ(points_for(999, 0, 1000), 999);
}

TEST(Points, ElapsedAtTheLimitEarnsPointsMinusFloorHalf) {
  // points - floor(points / 2): odd points keep the larger half.
  EXPECT_EQ(points_for(1000, 20000, 20000), 500);
  EXPECT_EQ(points_for(999, 1000, 1000), 500);
  EXPECT_EQ(points_for(1, 1000, 1000), 1);
  EXPECT_EQ(points_for(3, 1000, 1000), 2);
  EXPECT_EQ(points_for(100000, 600000, 600000), 50000);
  EXPECT_EQ(points_for(99999, 600000, 600000), 50000);
}

TEST(Points, FloorMattersForOddValues) {
  EXPECT_EQ(points_for(999, 1, 1000), 999);      // 999/2000 -> 0
  EXPECT_EQ(points_for(999, 2, 1000), 999);      // 1998/2000 -> 0
  EXPECT_EQ(points_for(999, 3, 1000), 998);      // 2997/2000 -> 1
  EXPECT_EQ(points_for(999, 999, 1000), 500);    // 998001/2000 -> 499
  EXPECT_EQ(points_for(7, 333, 1000), 6);        // 2331/2000 -> 1
  EXPECT_EQ(points_for(7, 857, 1000), 5);        // 5999/2000 -> 2
  EXPECT_EQ(points_for(7, 858, 1000), 4);        // 6006/2000 -> 3
  EXPECT_EQ(points_for(1000, 39, 20000), 1000);  // 39000/40000 -> 0
  EXPECT_EQ(points_for(1000, 40, 20000), 999);   // 40000/40000 -> 1
}

TEST(Points, SixtyFourBitProducts) {
  // 100000 * 600000 = 6e10 does not fit in 32 bits.
  EXPECT_EQ(points_for(100000, 600000, 600000), 50000);
  EXPECT_EQ(points_for(100000, 599999, 600000), 50001);  // 59999900000/1200000 -> 49999
  EXPECT_EQ(points_for(100000, 300000, 600000), 75000);
  EXPECT_EQ(points_for(100000, 21475, 600000), 98211);  // 2147500000/1200000 -> 1789
  EXPECT_EQ(points_for(100000, 42950, 600000), 96421);  // 4295000000/1200000 -> 3579
}

TEST(Points, MatchesTheFormulaOverTheWholeDomainSample) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200000; ++i) {
    const int64_t points = 1 + static_cast<int64_t>(rng() % 100000);
    const int64_t limit = 1000 + static_cast<int64_t>(rng() % 599001);
    const int64_t elapsed = static_cast<int64_t>(rng() % (limit + 1));
    ASSERT_EQ(points_for(points, elapsed, limit), reference(points, elapsed, limit))
        << points << " " << elapsed << " " << limit;
  }
}

TEST(Points, NeverBelowHalfAndNonIncreasingInElapsed) {
  for (int64_t points : {1, 2, 3, 999, 1000, 1001, 99999, 100000}) {
    for (int64_t limit : {1000, 1001, 20000, 600000}) {
      int64_t prev = points_for(points, 0, limit);
      EXPECT_EQ(prev, points);
      const int64_t step = limit / 997 + 1;
      for (int64_t elapsed = 0; elapsed <= limit; elapsed += step) {
        const int64_t p = points_for(points, elapsed, limit);
        EXPECT_LE(p, prev);
        EXPECT_GE(p, points - points / 2);
        EXPECT_LE(p, points);
        prev = p;
      }
      EXPECT_EQ(points_for(points, limit, limit), points - points / 2);
    }
  }
}

}  // namespace
}  // namespace quizflow::stages
