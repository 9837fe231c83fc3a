// Replay (spec §5 invariant 4): a quiz's standings recomputed from its event log with the rules
// of live processing — validate, dedupe, derive, apply (stages/) — without a graph and without
// notifications; and how they differ from the stored ones.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "core/events.h"
#include "core/quiz.h"
#include "core/replay_source.h"
#include "core/standing.h"
#include "core/store.h"

namespace quizflow {

struct ReplayedQuiz {
  int64_t quiz_id = 0;
  int64_t events = 0;               // events given
  int64_t rejected = 0;             // events the quiz's definition rejects now (they do not count)
  std::vector<CountedRow> counted;  // the answers that count, by (user_id, question_id)
  std::vector<StandingRow> standings;  // every player's standing, by user_id
};

// The events of `events` that `def` accepts (validate, spec §4: with `correct` and `points`
// derived), in order; adds how many it rejects to `rejected`.
std::vector<AnswerEvent> accepted_events(const QuizDef& def, std::span<const AnswerEvent> events,
                                         int64_t& rejected);

// Recomputes `def`'s counted answers and standings from `events` (its event log, any order;
// events of other quizzes are rejected). Pure: no I/O.
ReplayedQuiz replay_quiz(const QuizDef& def, std::span<const AnswerEvent> events);

// One player whose standing differs: absent on one side, or other values.
struct StandingDiff {
  int64_t user_id = 0;
  std::optional<Standing> stored, replayed;
};

// The players whose stored standing differs from the replayed one, by user_id.
std::vector<StandingDiff> diff_standings(std::span<const StandingRow> stored,
                                         std::span<const StandingRow> replayed);

// A replay over the stored event log (`quizflow replay`).
struct ReplayDiff {
  int64_t quiz_id = 0;
  StandingDiff diff;
};
struct ReplaySummary {
  int64_t events = 0;                    // read from the log
  int64_t rejected = 0;                  // events their quiz's definition rejects now
  int64_t quizzes = 0;                   // quizzes replayed
  int64_t quizzes_changed = 0;           // quizzes with at least one differing player
  int64_t players_changed = 0;           // players whose standing differs
  std::vector<ReplayDiff> first_diffs;   // the first `max_diffs` differences, quiz by quiz
  std::vector<int64_t> unknown_quizzes;  // events of quizzes without a stored definition
  // Finalized quizzes whose standings differ: reported, not rewritten (rewards stay as granted).
  std::vector<int64_t> finalized_changed;
  // From a file (RunReplayer): events new to the log, quizzes whose definition it created, and
  // quizzes skipped because the file's definition differs from the stored one.
  int64_t appended = 0;
  int64_t quizzes_created = 0;
  std::vector<int64_t> conflicting_quizzes;
  // Answers new to the log that finalized quizzes did not take (never added), and those quizzes.
  int64_t refused = 0;
  std::vector<int64_t> finalized_refusing;
  double seconds = 0;
};
// Called after each quiz: events read so far, the fraction of the work done (0 … 1), seconds
// since the start.
using ReplayProgress = std::function<void(int64_t events, double fraction, double seconds)>;

struct ReplayOptions {
  bool dry_run = true;    // compare only; else rebuild (Store::rebuild_quiz) quiz by quiz
  size_t max_diffs = 20;  // differences kept for the summary
  size_t jobs = 1;        // quizzes rebuilt at once (a connection each)
};

// Replays the stored log of `quiz_ids` (every quiz in the log when empty) quiz by quiz and
// compares with the stored standings. A dry run changes nothing; otherwise each quiz's counted
// answers and standings are replaced in one transaction that holds the quiz against batch
// transactions while it reads, recomputes and writes (engines serving it reload the quiz before
// their next batch of it; finalized quizzes are reported, not rewritten). Memory: one quiz's
// events.
Result<ReplaySummary> replay_log(Store& store, const std::vector<int64_t>& quiz_ids,
                                 const ReplayOptions& options = {},
                                 const ReplayProgress& progress = {});

// Replays runs of a source (`quizflow replay --from file:`, `quizflow import`) into `sum`.
// A run's quiz is defined by its SourceQuiz, else by its stored definition (none: reported as
// unknown). A dry run compares the standings the stored log plus the run's events give with the
// stored ones, changing nothing. Otherwise, in one transaction (Store::rebuild_quiz with a
// QuizImport): the definition is stored unless it is (one that differs from the stored one is
// a conflict: reported, the run skipped, nothing overwritten); the events the definition
// accepts are added to the log and the quiz rebuilt; a quiz the source says is closed is
// closed, and one it says is finalized is finalized with the source's rewards as granted (no
// notifications: they went out where the quiz ran). A quiz finalized in the database takes no
// answers (`refused`). Memory: one run's events and one quiz's log.
class RunReplayer {
 public:
  RunReplayer(Store& store, const ReplayOptions& options, ReplaySummary& sum);
  Status run(const QuizRun& r);

 private:
  Status compare(const QuizRun& r, const QuizDef& def, bool finalized);
  Status import(const QuizRun& r, const QuizDef& def);

  Store& store_;
  const ReplayOptions& options_;
  ReplaySummary& sum_;
};

// Replays every run of `source` (RunReplayer); `progress` after each run.
Result<ReplaySummary> replay_runs(Store& store, RunSource& source,
                                  const ReplayOptions& options = {},
                                  const ReplayProgress& progress = {});

}  // namespace quizflow
