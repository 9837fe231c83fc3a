// Event files: the event log as JSON lines — what `quizflow export` writes, to archive or move
// quizzes, and what `quizflow replay --from file:` and `quizflow import` read back. Each quiz's
// answers follow one quiz line that carries its definition, state and granted rewards:
//   {"quiz":{…as POST /v1/quizzes…},"state":"open"|"closed"|"finalized","rewards":[…]}
// and every other line is one answer in the shape POST /v1/answers takes (spec §3).
#pragma once

#include <cstdint>
#include <functional>
#include <istream>
#include <ostream>
#include <string>
#include <vector>

#include "core/events.h"
#include "core/quiz.h"
#include "core/status.h"
#include "core/store.h"
#include "pipeline/replay.h"

namespace quizflow::ingress {

struct ExportSummary {
  int64_t events = 0;
  int64_t quizzes = 0;  // quiz lines written
  // Quizzes whose events were written without a quiz line: no readable stored definition
  // (an import reports their events as of an unknown quiz).
  std::vector<int64_t> without_definition;
  double seconds = 0;
};

// Called about every `every_s` seconds while an export runs: events written so far, seconds.
using ExportProgress = std::function<void(int64_t events, double seconds)>;

// Writes the event log of `quiz_ids` (every quiz in the log when empty) to `out`, quiz by quiz
// (ascending): its quiz line, then its events by event_id, one JSON line each, all from one
// snapshot. Fails with the store's Status, or `internal` when `out` fails.
Result<ExportSummary> export_events(Store& store, const std::vector<int64_t>& quiz_ids,
                                    std::ostream& out, const ExportProgress& progress = {},
                                    double every_s = 5);

// Reads an event file line by line. Blank lines are skipped; any other line must be a quiz
// line or an answer (strict, as the HTTP API: unknown fields are refused).
class EventFileReader {
 public:
  explicit EventFileReader(std::istream& in) : in_(in) {}
  enum class Kind { quiz, event, end };
  // The next line into `quiz` or `event`; `end` after the last. A line that is neither:
  // `invalid` with "line N: <code>: <message> (field …)"; reading can't go on after it.
  Result<Kind> next(SourceQuiz& quiz, AnswerEvent& event);
  int64_t line() const { return line_; }         // lines read so far
  int64_t bytes_read() const { return bytes_; }  // bytes read so far

 private:
  std::istream& in_;
  std::string text_;
  int64_t line_ = 0, bytes_ = 0;
};

// Replays an event file of `file_bytes` bytes (for the progress) run by run of one quiz's lines
// (RunReplayer: memory is one run's events), keeping the quizzes of `quiz_ids` (all when
// empty). Export writes each quiz as one run; a file that has a quiz in several runs is replayed
// run by run. Stops at the first line that is not a quiz line or an answer (`invalid`, with the
// line number); the runs before it stay imported (importing again adds nothing twice).
Result<ReplaySummary> replay_file(Store& store, std::istream& in, int64_t file_bytes,
                                  const std::vector<int64_t>& quiz_ids,
                                  const ReplayOptions& options = {},
                                  const ReplayProgress& progress = {});

}  // namespace quizflow::ingress
