#include "stages/validate.h"

#include <string>

namespace quizflow::stages {

int64_t points_for(int64_t points, int64_t elapsed_ms, int64_t time_limit_ms) {
  return points - (points * elapsed_ms) / (2 * time_limit_ms);
}

Verdict quiz_finalized() {
  return Verdict::reject("quiz_finalized", "the quiz is finalized", "quiz_id");
}

Verdict validate(AnswerEvent& e, const CatalogSnapshot& catalog) {
  const QuizDef* q = catalog.find(e.quiz_id);
  if (!q) {
    if (catalog.is_finalized(e.quiz_id)) return quiz_finalized();
    return Verdict::reject("unknown_quiz", "no quiz with this quiz_id", "quiz_id");
  }
  auto st = catalog.states.find(e.quiz_id);
  if (st != catalog.states.end() && st->second == QuizState::closed)
    return Verdict::reject("quiz_not_open", "the quiz was closed", "quiz_id");
  if (e.answered_at_ms < q->opens_at_ms || e.answered_at_ms >= q->closes_at_ms)
    return Verdict::reject("quiz_not_open", "answered_at is outside the quiz's open window",
                           "answered_at");
  const Question* qu = q->find_question(e.question_id);
  if (!qu)
    return Verdict::reject("unknown_question", "the quiz has no such question", "question_id");
  if (e.option_id < 0 || e.option_id >= qu->option_count)
    return Verdict::reject("option_out_of_range",
                           "option_id must be 0.." + std::to_string(qu->option_count - 1),
                           "option_id");
  if (e.elapsed_ms < 0 || e.elapsed_ms > qu->time_limit_ms)
    return Verdict::reject("elapsed_out_of_range",
                           "elapsed_ms must be 0.." + std::to_string(qu->time_limit_ms),
                           "elapsed_ms");
  e.correct = e.option_id == qu->correct_option;
  e.points = e.correct ? points_for(qu->points, e.elapsed_ms, qu->time_limit_ms) : 0;
  return Verdict{};
}

}  // namespace quizflow::stages
