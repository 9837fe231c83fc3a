// Finalization of a quiz (spec §4): the final standings, the rewards of its tiers, the
// quiz_results and reward_granted notifications, and when each quiz is due. Plain logic: the
// pipeline runs the schedule in its serial batch node and `final_results` inside the
// finalization transaction, on the standings PostgreSQL holds.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "core/quiz.h"
#include "core/store.h"

namespace quizflow::stages {

// The tier that covers `rank`, or nullptr.
const RewardTier* tier_for(const QuizDef& quiz, int64_t rank);

// The outcome of `quiz` given its stored standings (any order): every player ranked by the
// standings order (1-based, no ties: core/standing.h), one reward per player whose rank falls in
// a tier, one quiz_results per player and one reward_granted per reward (deterministic ids).
FinalRows final_results(const QuizDef& quiz, std::vector<StandingRow> stored);

// When `quiz` is finalized without a close request: close_grace_ms after closes_at.
int64_t finalize_due_ms(const QuizDef& quiz, int64_t close_grace_ms);

// When each live quiz is due for finalization, and which are being finalized. Not thread-safe:
// used from the serial batch node.
class FinalizeSchedule {
 public:
  // Finalize `quiz_id` at `due_ms` (wall clock) or earlier if it was already due earlier.
  // Ignored while it is being finalized.
  void schedule(int64_t quiz_id, int64_t due_ms);
  // The quizzes due at `now_ms`: they leave the schedule and are marked finalizing.
  std::vector<int64_t> take_due(int64_t now_ms);
  bool finalizing(int64_t quiz_id) const { return finalizing_.count(quiz_id) > 0; }
  // The finalization of `quiz_id` ended: done when `ok`, else it is scheduled again at
  // `retry_at_ms` (and answers are accepted again until then only if they were before: the
  // caller decides).
  void finished(int64_t quiz_id, bool ok, int64_t retry_at_ms);
  // The earliest due time (wall clock), INT64_MAX when none.
  int64_t next_due_ms() const;
  size_t scheduled() const { return due_of_.size(); }
  const std::set<int64_t>& finalizing_quizzes() const { return finalizing_; }

 private:
  std::map<int64_t, int64_t> due_of_;             // quiz -> due
  std::set<std::pair<int64_t, int64_t>> by_due_;  // (due, quiz)
  std::set<int64_t> finalizing_;
};

}  // namespace quizflow::stages
