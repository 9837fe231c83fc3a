// Replay (spec §5 invariant 4): a quiz's standings recomputed from its event log with the rules
// of live processing — validate, dedupe, derive, apply (stages/) — without a graph and without
// notifications; and how they differ from the stored ones.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "core/events.h"
#include "core/quiz.h"
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
  double seconds = 0;
};
// Called after each quiz: events read so far, seconds since the start.
using ReplayProgress = std::function<void(int64_t events, double seconds)>;

struct ReplayOptions {
  bool dry_run = true;    // compare only; else rebuild (Store::rebuild_quiz) quiz by quiz
  size_t max_diffs = 20;  // differences kept for the summary
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

}  // namespace quizflow
