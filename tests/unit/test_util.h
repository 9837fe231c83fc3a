// Small helpers shared by the tests (header-only; the unit tests and the integration tests).
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

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

// Concatenates strings, string views, C strings and integers by appending. GCC 12 at -O3 reports
// a false -Wrestrict on `"literal" + std::string&&` (shared pitfalls), which fails the Release
// build with -Werror; test code builds ids and bodies with this instead.
template <typename... A>
std::string cat(const A&... a) {
  std::string out;
  auto add = [&out](const auto& x) {
    using T = std::decay_t<decltype(x)>;
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, char>)
      out += std::to_string(x);
    else
      out += x;
  };
  (add(a), ...);
  return out;
}

// Polls `pred` every `every` until it returns true or `timeout` has passed; returns whether it
// became true (it is evaluated once more at the deadline). Assert on the result:
//   ASSERT_TRUE(wait_until([&] { return done(); }, std::chrono::seconds(5)));
template <typename Pred>
bool wait_until(Pred&& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds every = std::chrono::milliseconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(every);
  }
}

// Pointers to each element of `v` (the stage rules take events by pointer); valid while `v` is.
template <typename T>
std::vector<const T*> pointers_to(const std::vector<T>& v) {
  std::vector<const T*> out;
  out.reserve(v.size());
  for (const auto& e : v) out.push_back(&e);
  return out;
}

}  // namespace quizflow::test
