// Small helpers shared by the unit tests (header-only).
#pragma once

#include <cstdint>
#include <ctime>

namespace quizflow::test {

// Milliseconds since the epoch of a UTC civil time, computed with the C library (independent of
// the code under test).
inline int64_t utc_ms(int y, int mo, int d, int h, int mi, int s, int ms = 0) {
  std::tm t{};
  t.tm_year = y - 1900;
  t.tm_mon = mo - 1;
  t.tm_mday = d;
  t.tm_hour = h;
  t.tm_min = mi;
  t.tm_sec = s;
  return static_cast<int64_t>(timegm(&t)) * 1000 + ms;
}

}  // namespace quizflow::test
