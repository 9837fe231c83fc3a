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

// When each live quiz is due for finalization, and which are being finalized. A quiz is
// `finalizing` from the moment it is due until its finalization succeeded — through failed
// attempts too, so that none of its answers is stored after a finalization that did commit but
// was reported failed (its reply lost). Failed attempts are retried with a growing delay.
// Not thread-safe: used from the serial batch node.
class FinalizeSchedule {
 public:
  // Finalize `quiz_id` at `due_ms` (wall clock) or earlier if it was already due earlier.
  // Ignored while it is finalizing.
  void schedule(int64_t quiz_id, int64_t due_ms);
  // The quizzes that became due at `now_ms`: they leave the schedule and are finalizing (ready
  // to be tried at once).
  std::vector<int64_t> take_due(int64_t now_ms);
  bool finalizing(int64_t quiz_id) const { return finalizing_.count(quiz_id) > 0; }
  // Whether an answer to `quiz_id` that passed validate is refused now (`quiz_finalized`): its
  // finalization began, or the quiz is finalized — nothing of a quiz is stored after it.
  bool refuses(int64_t quiz_id, const CatalogSnapshot& catalog) const {
    return finalizing(quiz_id) || catalog.is_finalized(quiz_id);
  }
  // The finalizing quizzes whose attempt may start at `now_ms` (none in progress, retry time
  // reached), in quiz order.
  std::vector<int64_t> ready(int64_t now_ms) const;
  // An attempt for `quiz_id` started.
  void started(int64_t quiz_id);
  // The attempt ended: the quiz is done when `ok`; otherwise it stays finalizing and is ready
  // again after 1 s, 2 s, 4 s … at most 60 s. Returns the delay (0 when ok).
  int64_t finished(int64_t quiz_id, bool ok, int64_t now_ms);
  // The earliest time something becomes due or ready after `now_ms` (wall clock), INT64_MAX when
  // nothing waits for time.
  int64_t next_due_ms(int64_t now_ms) const;
  size_t scheduled() const { return due_of_.size(); }

 private:
  struct Finalizing {
    int64_t ready_at = 0;  // INT64_MAX while an attempt runs
    int failures = 0;
  };
  std::map<int64_t, int64_t> due_of_;             // quiz -> due
  std::set<std::pair<int64_t, int64_t>> by_due_;  // (due, quiz)
  std::map<int64_t, Finalizing> finalizing_;
};

}  // namespace quizflow::stages
