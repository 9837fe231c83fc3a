// The door between callers (HTTP threads submitting answers) and a resource that close() takes
// away (the graph, destroyed by Engine::stop). One atomic word holds both the "closed" flag and
// the number of callers inside: every enter() and close() is a read-modify-write of that one
// word, so they are totally ordered and cannot both miss each other (a flag and a separate
// counter, each stored and then the other loaded, can: store buffering).
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

namespace quizflow {

class AdmissionGate {
 public:
  // Closed until open() is called.
  AdmissionGate() = default;
  AdmissionGate(const AdmissionGate&) = delete;
  AdmissionGate& operator=(const AdmissionGate&) = delete;

  void open() { state_.fetch_and(~kClosed, std::memory_order_acq_rel); }

  // True: the caller is inside and must call leave(). False: the gate is closed (nothing to
  // leave).
  bool enter() {
    // A closed gate is seen without touching the count, so close() does not wait for callers
    // it refuses; the read-modify-write below decides.
    if (state_.load(std::memory_order_acquire) & kClosed) return false;
    if (state_.fetch_add(1, std::memory_order_acq_rel) & kClosed) {
      leave();
      return false;
    }
    return true;
  }
  void leave() { state_.fetch_sub(1, std::memory_order_acq_rel); }

  // Refuses new callers, then waits until every caller inside has left. Callers leave quickly
  // (they only hand work over), so the wait yields rather than sleeps.
  void close() {
    state_.fetch_or(kClosed, std::memory_order_acq_rel);
    while ((state_.load(std::memory_order_acquire) & ~kClosed) != 0) std::this_thread::yield();
  }

  bool is_open() const { return (state_.load(std::memory_order_acquire) & kClosed) == 0; }

 private:
  static constexpr uint64_t kClosed = uint64_t{1} << 63;
  std::atomic<uint64_t> state_{kClosed};
};

// A pass through the gate for the scope's life: entered() says whether the caller got in; a
// caller that got in leaves when the pass is destroyed.
class GatePass {
 public:
  explicit GatePass(AdmissionGate& gate) : gate_(gate), entered_(gate.enter()) {}
  ~GatePass() {
    if (entered_) gate_.leave();
  }
  GatePass(const GatePass&) = delete;
  GatePass& operator=(const GatePass&) = delete;
  bool entered() const { return entered_; }

 private:
  AdmissionGate& gate_;
  const bool entered_;
};

}  // namespace quizflow
