// Typed answer events and per-item verdicts: what flows through the graph.
#pragma once

#include <cstdint>
#include <string>

namespace quizflow {

// One answer a player tapped (spec §3). Fields are filled by the ingest stage; `correct` and
// `points` are derived by the validate stage from the quiz catalog.
struct AnswerEvent {
  std::string event_id;
  int64_t quiz_id = 0;
  int64_t user_id = 0;
  int32_t question_id = 0;
  int64_t option_id = 0;       // range-checked by validate (option_out_of_range)
  int64_t answered_at_ms = 0;  // milliseconds since the Unix epoch, UTC
  int64_t elapsed_ms = 0;      // range-checked by validate (elapsed_out_of_range)
  // Derived by validate:
  bool correct = false;
  int64_t points = 0;
};

// Outcome of one item of a request (spec §3 response body).
enum class ItemStatus : uint8_t { pending, accepted, duplicate, rejected };

const char* to_string(ItemStatus s);

// Rejection codes that say nothing about the answer itself: the engine could not process it. The
// request is answered 503 (+ Retry-After) and a resend is safe (event ids make it idempotent).
inline constexpr const char* kStorageUnavailable = "storage_unavailable";
inline constexpr const char* kInternalError = "internal_error";
// The database refused the answer's data (a constraint or data error) while the rest of its
// batch was stored: a rejection of the answer itself (a resend is refused again).
inline constexpr const char* kStorageRejected = "storage_rejected";

struct Verdict {
  ItemStatus status = ItemStatus::pending;
  std::string code;     // rejection code, e.g. "schema", "unknown_quiz"; empty when accepted
  std::string message;  // human-readable detail
  std::string field;    // offending field for schema errors, else empty

  static Verdict reject(std::string code, std::string message, std::string field = {}) {
    return Verdict{ItemStatus::rejected, std::move(code), std::move(message), std::move(field)};
  }
  // The engine failed to process the item (an exception in a stage; docs/error-policy.md).
  static Verdict internal_error() {
    return reject(kInternalError, "the engine could not process this answer; retry the request");
  }
  // A rejection by the server's failure rather than the answer's content (see kStorageUnavailable).
  bool server_failure() const {
    return status == ItemStatus::rejected &&
           (code == kStorageUnavailable || code == kInternalError);
  }
};

}  // namespace quizflow
