// Event files: the event log as JSON lines — what `quizflow export` writes, to archive or move
// quizzes, and what `quizflow replay --from file:` and `quizflow import` read back. Each quiz's
// answers follow one quiz line that carries its definition, state and granted rewards:
//   {"quiz":{…as POST /v1/quizzes…},"state":"open"|"closed"|"finalized","rewards":[…]}
// and every other line is one answer in the shape POST /v1/answers takes (spec §3).
#pragma once

#include <cstdint>
#include <functional>
#include <istream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "core/events.h"
#include "core/quiz.h"
#include "core/replay_source.h"
#include "core/status.h"
#include "core/store.h"

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

// The runs of an event file (RunSource): a quiz line and the answers after it, or answers of
// one quiz without one (memory: one run's events), of the quizzes of `quiz_ids` (all when
// empty). Export writes each quiz as one run; a file with a quiz in several runs gives several.
// A run whose quiz line announces more answers than follow (a file cut short) is `invalid`
// with that line's number, as is a line that is neither a quiz line nor an answer.
class EventFileRuns final : public RunSource {
 public:
  // `file_bytes`: the file's size for fraction() (0: unknown, e.g. a pipe).
  EventFileRuns(std::istream& in, int64_t file_bytes, std::vector<int64_t> quiz_ids)
      : reader_(in), bytes_(file_bytes), quiz_ids_(std::move(quiz_ids)) {}
  Result<std::optional<QuizRun>> next() override;
  double fraction() const override;

 private:
  bool wanted(int64_t quiz) const;
  EventFileReader reader_;
  int64_t bytes_;
  std::vector<int64_t> quiz_ids_;
  // A line read ahead: the first of the next run.
  std::optional<SourceQuiz> next_quiz_;
  std::optional<AnswerEvent> next_event_;
  int64_t next_line_ = 0;
  bool ended_ = false;
};

}  // namespace quizflow::ingress
