// validate stage: checks a typed event against the quiz catalog (spec §4) and derives its score.
#pragma once

#include <cstdint>

#include "core/events.h"
#include "core/quiz.h"

namespace quizflow::stages {

// Points a correct answer earns: points - floor(points * elapsed_ms / (2 * time_limit_ms)),
// 64-bit integer arithmetic. Requires 0 <= elapsed_ms <= time_limit_ms, time_limit_ms > 0.
int64_t points_for(int64_t points, int64_t elapsed_ms, int64_t time_limit_ms);

// The rejection of an answer to a finalized quiz (or one whose finalization has begun).
Verdict quiz_finalized();

// Returns a rejected verdict with the matching code (unknown_quiz, quiz_finalized,
// quiz_not_open — outside the window, or the quiz was closed by request —, unknown_question,
// option_out_of_range, elapsed_out_of_range), or a pending verdict after setting e.correct and
// e.points. Pure: no I/O, no locks.
Verdict validate(AnswerEvent& e, const CatalogSnapshot& catalog);

}  // namespace quizflow::stages
