// Admission at the door (spec §2 "Bounded", §3 503 + Retry-After): a request's events are
// counted against the in-flight budget before its body is parsed; over the budget it is refused.
#pragma once

#include <cstddef>
#include <cstdint>

namespace quizflow::stages {

// The events a body of `body_bytes` is counted for before it is parsed: one per 64 bytes, at
// least one (a JSON answer takes well over 64 bytes, so this over-counts; ingest reconciles the
// count with the real number of items).
int64_t admission_estimate(size_t body_bytes);

// Whether a request counted for `estimate` events may enter while `in_flight` events are
// admitted and not yet answered: when it fits under `max_in_flight`, or whatever its size when
// nothing is in flight (a request larger than the whole budget must still pass, alone).
bool admits(int64_t in_flight, int64_t estimate, int64_t max_in_flight);

}  // namespace quizflow::stages
