#include "stages/finalize.h"

#include <algorithm>

#include "stages/notify.h"

namespace quizflow::stages {

const RewardTier* tier_for(const QuizDef& quiz, int64_t rank) {
  // Tiers are sorted by rank_from and do not overlap.
  auto it = std::upper_bound(quiz.rewards.begin(), quiz.rewards.end(), rank,
                             [](int64_t r, const RewardTier& t) { return r < t.rank_from; });
  if (it == quiz.rewards.begin()) return nullptr;
  --it;
  return rank <= it->rank_to ? &*it : nullptr;
}

FinalRows final_results(const QuizDef& quiz, std::vector<StandingRow> stored) {
  std::sort(stored.begin(), stored.end(), [](const StandingRow& a, const StandingRow& b) {
    return RankKey{a.score, a.correct, a.time_ms, a.user_id} <
           RankKey{b.score, b.correct, b.time_ms, b.user_id};
  });
  FinalRows out;
  out.standings.reserve(stored.size());
  out.notifications.reserve(stored.size());
  for (size_t i = 0; i < stored.size(); ++i) {
    const StandingRow& r = stored[i];
    const auto rank = static_cast<int64_t>(i + 1);
    const Standing st{r.score, r.correct, r.time_ms};
    out.standings.push_back(FinalStanding{r.user_id, rank, st});
    out.notifications.push_back(quiz_results(quiz.quiz_id, r.user_id, rank, st));
    if (const RewardTier* t = tier_for(quiz, rank))
      out.rewards.push_back(RewardRow{r.user_id, rank, t->reward});
  }
  for (const RewardRow& rw : out.rewards)
    out.notifications.push_back(reward_granted(quiz.quiz_id, rw.user_id, rw.rank, rw.reward));
  return out;
}

int64_t finalize_due_ms(const QuizDef& quiz, int64_t close_grace_ms) {
  return quiz.closes_at_ms + close_grace_ms;
}

void FinalizeSchedule::schedule(int64_t quiz_id, int64_t due_ms) {
  if (finalizing(quiz_id)) return;
  auto [it, fresh] = due_of_.try_emplace(quiz_id, due_ms);
  if (!fresh) {
    if (it->second <= due_ms) return;
    by_due_.erase({it->second, quiz_id});
    it->second = due_ms;
  }
  by_due_.insert({due_ms, quiz_id});
}

std::vector<int64_t> FinalizeSchedule::take_due(int64_t now_ms) {
  std::vector<int64_t> out;
  while (!by_due_.empty() && by_due_.begin()->first <= now_ms) {
    const int64_t quiz = by_due_.begin()->second;
    by_due_.erase(by_due_.begin());
    due_of_.erase(quiz);
    finalizing_.emplace(quiz, Finalizing{});
    out.push_back(quiz);
  }
  return out;
}

std::vector<int64_t> FinalizeSchedule::ready(int64_t now_ms) const {
  std::vector<int64_t> out;
  for (const auto& [quiz, f] : finalizing_)
    if (f.ready_at <= now_ms) out.push_back(quiz);
  return out;
}

void FinalizeSchedule::started(int64_t quiz_id) {
  auto it = finalizing_.find(quiz_id);
  if (it != finalizing_.end()) it->second.ready_at = INT64_MAX;
}

int64_t FinalizeSchedule::finished(int64_t quiz_id, bool ok, int64_t now_ms) {
  auto it = finalizing_.find(quiz_id);
  if (it == finalizing_.end()) return 0;
  if (ok) {
    finalizing_.erase(it);
    return 0;
  }
  const int shift = std::min(it->second.failures, 6);  // 1 s … 64 s, capped at 60 s
  const int64_t delay = std::min<int64_t>(60000, int64_t{1000} << shift);
  ++it->second.failures;
  it->second.ready_at = now_ms + delay;
  return delay;
}

int64_t FinalizeSchedule::next_due_ms(int64_t now_ms) const {
  int64_t next = by_due_.empty() ? INT64_MAX : by_due_.begin()->first;
  for (const auto& [quiz, f] : finalizing_)
    if (f.ready_at > now_ms && f.ready_at != INT64_MAX) next = std::min(next, f.ready_at);
  return next;
}

}  // namespace quizflow::stages
