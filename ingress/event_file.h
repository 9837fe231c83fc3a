// Event files: the event log as JSON lines, one answer per line in the shape POST /v1/answers
// takes (spec §3) — what `quizflow export` writes, to archive or move quizzes, and what replay
// and import read back.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <vector>

#include "core/status.h"
#include "core/store.h"

namespace quizflow::ingress {

struct ExportSummary {
  int64_t events = 0;
  int64_t quizzes = 0;  // quizzes with at least one event written
  double seconds = 0;
};

// Called about every `every_s` seconds while an export runs: events written so far, seconds.
using ExportProgress = std::function<void(int64_t events, double seconds)>;

// Writes the event log of `quiz_ids` (every stored quiz when empty) to `out`, quiz by quiz
// (ascending), each quiz's events by event_id, one JSON line each. Fails with the store's
// Status, or `internal` when `out` fails.
Result<ExportSummary> export_events(Store& store, const std::vector<int64_t>& quiz_ids,
                                    std::ostream& out, const ExportProgress& progress = {},
                                    double every_s = 5);

}  // namespace quizflow::ingress
