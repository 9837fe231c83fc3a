// A request travelling through the graph: the raw input, one slot per item, and the completion
// that fires exactly once when every item has its verdict (or the request failed as a whole).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/events.h"

namespace quizflow {

// A request-level failure (spec §3): answered with `http_status` and an error body.
struct RequestError {
  int http_status = 400;
  std::string code;
  std::string message;
  std::string field;
};

struct Item {
  std::optional<AnswerEvent> event;  // set by ingest when the item decoded
  Verdict verdict;                   // pending until a stage decides
  std::string echo_id;               // event_id echoed in the result when the item did not decode

  const std::string& event_id() const { return event ? event->event_id : echo_id; }
};

// Owned through shared_ptr by every stage that still holds one of its items. Thread-safety:
// each item slot is written by exactly one stage thread; resolve() publishes the write through
// the atomic counter, and the completion runs on the thread that resolves the last item.
class Request {
 public:
  using DoneFn = std::function<void(Request&)>;

  Request(std::string body, DoneFn done)
      : body(std::move(body)), received(std::chrono::steady_clock::now()), done_(std::move(done)) {}
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  std::string body;  // raw input; ingest parses it
  const std::chrono::steady_clock::time_point received;
  bool single = false;  // body was one answer object rather than {"answers":[...]}
  std::optional<RequestError> error;
  std::vector<Item> items;
  int64_t admitted = 0;  // events counted against the in-flight budget (released at completion)

  // Called by ingest once `items` is sized, with n = every item that is or will be resolve()d,
  // including those a stage resolved before this call. Completes here when all n already are
  // (n == 0 included).
  void arm(size_t n) { settle(kUnarmed - n); }

  // Sets item i's verdict; fires the completion when it was the last pending item.
  void resolve(size_t i, Verdict v) {
    items[i].verdict = std::move(v);
    settle(1);
  }

  // Fails the whole request (before arm()).
  void fail(RequestError e) {
    error = std::move(e);
    items.clear();
    finish();
  }

  bool finished() const { return finished_.load(std::memory_order_acquire); }

 private:
  // Before arm() the counter holds kUnarmed minus the items resolved so far, so it cannot reach 0;
  // arm(n) removes the bias and adds n in one atomic step (modulo 2^64).
  static constexpr size_t kUnarmed = size_t{1} << (sizeof(size_t) * 8 - 1);
  void settle(size_t k) {
    if (pending_.fetch_sub(k, std::memory_order_acq_rel) == k) finish();
  }
  void finish() {
    if (finished_.exchange(true, std::memory_order_acq_rel)) return;
    // The engine's completion catches, logs and counts; this is only the last line of defence
    // (finish() runs inside graph nodes, which must not throw).
    try {
      if (done_) done_(*this);
    } catch (...) {
    }
  }

  std::atomic<size_t> pending_{kUnarmed};
  std::atomic<bool> finished_{false};
  DoneFn done_;
};

using RequestPtr = std::shared_ptr<Request>;

// A reference to one item of a request, as held by the batch buffers.
struct EventRef {
  RequestPtr request;
  uint32_t index = 0;
  const AnswerEvent& event() const { return *request->items[index].event; }
};

}  // namespace quizflow
