// pipeline/admission_gate.h: close() against callers entering and leaving on other threads.
// What Engine::stop relies on: once close() has returned, nobody is inside and nobody gets in;
// everybody who got in did so before close() finished (and close() waited for them to leave).
#include "pipeline/admission_gate.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

namespace quizflow {
namespace {

TEST(AdmissionGate, ClosedUntilOpenedAndClosedAgainAfterClose) {
  AdmissionGate gate;
  EXPECT_FALSE(gate.is_open());
  EXPECT_FALSE(gate.enter());
  gate.open();
  EXPECT_TRUE(gate.is_open());
  ASSERT_TRUE(gate.enter());
  ASSERT_TRUE(gate.enter());
  gate.leave();
  gate.leave();
  gate.close();
  EXPECT_FALSE(gate.is_open());
  EXPECT_FALSE(gate.enter());
  gate.close();  // idempotent, and refused enters left nothing behind to wait for
  gate.open();
  EXPECT_TRUE(gate.enter());
  gate.leave();
  gate.close();
}

// close() must wait for a caller inside, however long it stays.
TEST(AdmissionGate, CloseWaitsForTheCallerInside) {
  AdmissionGate gate;
  gate.open();
  ASSERT_TRUE(gate.enter());
  std::atomic<bool> closed{false};
  std::thread closer([&] {
    gate.close();
    closed.store(true);
  });
  // Refused as soon as close() started, although close() has not returned.
  while (gate.is_open()) std::this_thread::yield();
  EXPECT_FALSE(gate.enter());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(closed.load()) << "close() returned while a caller was inside";
  gate.leave();
  closer.join();
  EXPECT_TRUE(closed.load());
}

// Threads hammer enter()/leave() while another thread closes; repeated on one gate (reopened).
TEST(AdmissionGate, NobodyInsideOrAdmittedAfterCloseReturns) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 50;
  AdmissionGate gate;
  std::mt19937 rng(3);
  for (int round = 0; round < kRounds; ++round) {
    gate.open();
    std::atomic<bool> close_returned{false};
    std::atomic<bool> stop{false};
    std::atomic<int> inside{0};
    std::atomic<int64_t> admitted{0}, refused{0};
    std::atomic<int64_t> admitted_after_close{0};  // enter() succeeded once close() had returned
    std::atomic<int64_t> seen_closed_inside{0};    // inside while close() had returned
    std::atomic<int> ready{0};
    std::vector<std::thread> callers;
    for (int t = 0; t < kThreads; ++t) {
      callers.emplace_back([&] {
        ready.fetch_add(1);
        while (!stop.load()) {
          const bool was_closed = close_returned.load();
          if (gate.enter()) {
            inside.fetch_add(1);
            admitted.fetch_add(1);
            if (was_closed) admitted_after_close.fetch_add(1);
            // close() cannot have returned while we are inside.
            if (close_returned.load()) seen_closed_inside.fetch_add(1);
            inside.fetch_sub(1);
            gate.leave();
          } else {
            refused.fetch_add(1);
          }
        }
      });
    }
    while (ready.load() < kThreads) std::this_thread::yield();
    // Close at a random moment of the hammering.
    const auto pause = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 300)(rng));
    const auto until = std::chrono::steady_clock::now() + pause;
    while (std::chrono::steady_clock::now() < until) std::this_thread::yield();
    gate.close();
    EXPECT_EQ(inside.load(), 0) << "round " << round << ": a caller inside after close()";
    close_returned.store(true);
    // Let the callers try again after close() returned.
    const int64_t refused_at_close = refused.load();
    while (refused.load() < refused_at_close + 4 * kThreads) std::this_thread::yield();
    stop.store(true);
    for (auto& t : callers) t.join();
    EXPECT_EQ(admitted_after_close.load(), 0) << "round " << round;
    EXPECT_EQ(seen_closed_inside.load(), 0) << "round " << round;
    EXPECT_FALSE(gate.enter());
    if (HasFailure()) break;
  }
}

}  // namespace
}  // namespace quizflow
