// RFC 3339 timestamps <-> ms since the epoch.
#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <optional>
#include <random>
#include <string>

#include "core/time_util.h"
#include "unit/test_util.h"

namespace quizflow {
namespace {

using test::utc_ms;

std::string gm_format(int64_t ms) {  // reference formatter
  int64_t secs = ms / 1000, rem = ms % 1000;
  if (rem < 0) {
    rem += 1000;
    secs -= 1;
  }
  const time_t t = static_cast<time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[80];
  std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(rem));
  return out;
}

TEST(Time, ParsesUtc) {
  EXPECT_EQ(parse_rfc3339_ms("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_rfc3339_ms("1970-01-01T00:00:00.001Z"), 1);
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01T10:00:00Z"), utc_ms(2026, 3, 1, 10, 0, 0));
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01T10:00:00.123Z"), utc_ms(2026, 3, 1, 10, 0, 0, 123));
  EXPECT_EQ(parse_rfc3339_ms("2026-12-31T23:59:59.999Z"), utc_ms(2026, 12, 31, 23, 59, 59, 999));
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01t10:00:00z"), utc_ms(2026, 3, 1, 10, 0, 0));
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01 10:00:00Z"), utc_ms(2026, 3, 1, 10, 0, 0));
}

TEST(Time, AppliesOffsets) {
  const int64_t utc = utc_ms(2026, 3, 1, 10, 0, 0, 250);
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01T15:30:00.250+05:30"), utc);
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01T02:00:00.250-08:00"), utc);
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01T10:00:00.250+00:00"), utc);
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01T10:00:00.250-00:00"), utc);
  EXPECT_EQ(parse_rfc3339_ms("2026-03-02T09:59:00.250+23:59"), utc_ms(2026, 3, 1, 10, 0, 0, 250));
  // Offsets move across day, month and year boundaries.
  EXPECT_EQ(parse_rfc3339_ms("2026-01-01T03:00:00+05:30"), utc_ms(2025, 12, 31, 21, 30, 0));
  EXPECT_EQ(parse_rfc3339_ms("2025-12-31T20:00:00-08:00"), utc_ms(2026, 1, 1, 4, 0, 0));
  EXPECT_EQ(parse_rfc3339_ms("2024-03-01T01:00:00+02:00"), utc_ms(2024, 2, 29, 23, 0, 0));
}

TEST(Time, LeapDays) {
  EXPECT_EQ(parse_rfc3339_ms("2024-02-29T12:00:00Z"), utc_ms(2024, 2, 29, 12, 0, 0));
  EXPECT_EQ(parse_rfc3339_ms("2000-02-29T00:00:00Z"), utc_ms(2000, 2, 29, 0, 0, 0));
  EXPECT_EQ(parse_rfc3339_ms("2400-02-29T00:00:00Z"), utc_ms(2400, 2, 29, 0, 0, 0));
  EXPECT_FALSE(parse_rfc3339_ms("2025-02-29T12:00:00Z"));
  EXPECT_FALSE(parse_rfc3339_ms("1900-02-29T12:00:00Z"));
  EXPECT_FALSE(parse_rfc3339_ms("2100-02-29T12:00:00Z"));
  EXPECT_FALSE(parse_rfc3339_ms("2024-02-30T12:00:00Z"));
  EXPECT_EQ(format_rfc3339_ms(utc_ms(2024, 2, 29, 23, 59, 59, 999)), "2024-02-29T23:59:59.999Z");
  EXPECT_EQ(format_rfc3339_ms(utc_ms(2024, 2, 29, 23, 59, 59, 999) + 1),
            "2024-03-01T00:00:00.000Z");
}

TEST(Time, FractionBeyondMillisecondsIsTruncated) {
  const int64_t base = utc_ms(2026, 3, 1, 10, 0, 0);
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01T10:00:00.1239Z"), base + 123);
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01T10:00:00.9999999Z"), base + 999);
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01T10:00:00.000999999Z"), base);
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01T10:00:00.5Z"), base + 500);
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01T10:00:00.05Z"), base + 50);
  EXPECT_EQ(parse_rfc3339_ms("2026-03-01T10:00:00.1239+01:00"), base - 3600000 + 123);
}

TEST(Time, RejectsMalformed) {
  for (const char* s : {"",
                        "2026",
                        "2026-03-01",
                        "2026-03-01T10:00:00",
                        "2026-03-01T10:00:00.5",
                        "2026-03-01T10:00Z",
                        "2026-03-01X10:00:00Z",
                        "2026-03-01T10:00:00+05",
                        "2026-03-01T10:00:00+0530",
                        "2026-03-01T10:00:00+24:00",
                        "2026-03-01T10:00:00+05:60",
                        "2026-03-01T10:00:00.Z",
                        "2026-13-01T10:00:00Z",
                        "2026-00-10T10:00:00Z",
                        "2026-04-31T10:00:00Z",
                        "2026-03-32T10:00:00Z",
                        "2026-03-01T24:00:00Z",
                        "2026-03-01T10:60:00Z",
                        "2026-03-01T10:00:60Z",
                        "0000-01-01T00:00:00Z",
                        "2026-03-01T10:00:00ZZ",
                        "2026-03-01T10:00:00Z ",
                        " 2026-03-01T10:00:00Z",
                        "2026-3-01T10:00:00Z",
                        "+2026-03-01T10:00:00Z",
                        "2026-03-01T10:00:00.1234567890Z",
                        "garbage",
                        "2026-03-01T1a:00:00Z",
                        "2026-03-01T10:00:00UTC"}) {
    EXPECT_FALSE(parse_rfc3339_ms(s).has_value()) << s;
  }
  const std::string with_nul("2026-03-01T10:00:00Z\0", 21);
  EXPECT_FALSE(parse_rfc3339_ms(with_nul).has_value());
}

TEST(Time, FormatsUtcWithMilliseconds) {
  EXPECT_EQ(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339_ms(1), "1970-01-01T00:00:00.001Z");
  EXPECT_EQ(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(format_rfc3339_ms(-1000), "1969-12-31T23:59:59.000Z");
  EXPECT_EQ(format_rfc3339_ms(utc_ms(2026, 3, 1, 10, 0, 0, 120)), "2026-03-01T10:00:00.120Z");
  EXPECT_EQ(format_rfc3339_ms(utc_ms(1, 1, 1, 0, 0, 0)), "0001-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339_ms(utc_ms(9999, 12, 31, 23, 59, 59, 999)), "9999-12-31T23:59:59.999Z");
}

TEST(Time, RoundTrips) {
  // format -> parse over a wide random range, checked against the C library's formatter.
  std::mt19937_64 rng(99);
  const int64_t lo = utc_ms(1, 1, 1, 0, 0, 0), hi = utc_ms(9999, 12, 31, 23, 59, 59, 999);
  for (int i = 0; i < 100000; ++i) {
    const int64_t ms = lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
    const std::string text = format_rfc3339_ms(ms);
    ASSERT_EQ(text, gm_format(ms)) << ms;
    ASSERT_EQ(parse_rfc3339_ms(text), ms) << text;
  }
  // parse -> format normalizes offsets to UTC.
  EXPECT_EQ(format_rfc3339_ms(*parse_rfc3339_ms("2026-03-01T15:30:00.250+05:30")),
            "2026-03-01T10:00:00.250Z");
  EXPECT_EQ(format_rfc3339_ms(*parse_rfc3339_ms("2026-03-01T02:00:00.007-08:00")),
            "2026-03-01T10:00:00.007Z");
  EXPECT_EQ(format_rfc3339_ms(*parse_rfc3339_ms("2024-02-29T23:30:00-01:00")),
            "2024-03-01T00:30:00.000Z");
}

// Bracketed by clock_gettime(CLOCK_REALTIME), the fine wall clock. (std::time() reads a coarse
// clock that can lag it by a few milliseconds: the bracket then failed now and then.)
TEST(Time, NowIsTheWallClock) {
  auto realtime_ms = [] {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  };
  const int64_t before = realtime_ms();
  const int64_t n = now_ms();
  const int64_t after = realtime_ms();
  EXPECT_GE(n, before);
  EXPECT_LE(n, after);
}

}  // namespace
}  // namespace quizflow
