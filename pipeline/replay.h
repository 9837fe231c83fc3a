// Replay (spec §5 invariant 4): a quiz's standings recomputed from its event log with the rules
// of live processing — validate, dedupe, derive, apply (stages/) — without a graph and without
// notifications; and how they differ from the stored ones.
#pragma once

#include <cstdint>
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

}  // namespace quizflow
