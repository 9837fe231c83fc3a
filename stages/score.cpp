#include "stages/score.h"

#include <mutex>

namespace quizflow::stages {
namespace {

bool earlier(int64_t at_a, const std::string& id_a, int64_t at_b, const std::string& id_b) {
  return at_a != at_b ? at_a < at_b : id_a < id_b;
}

}  // namespace

Proposal QuizStandings::propose(int64_t quiz_id,
                                const std::vector<const AnswerEvent*>& events) const {
  Proposal p;
  p.quiz_id = quiz_id;
  // Winner per key among the batch: index into events.
  std::map<Key, size_t> best;
  for (size_t i = 0; i < events.size(); ++i) {
    const AnswerEvent& e = *events[i];
    const Key key{e.user_id, e.question_id};
    auto [it, fresh] = best.try_emplace(key, i);
    if (!fresh) {
      const AnswerEvent& cur = *events[it->second];
      if (earlier(e.answered_at_ms, e.event_id, cur.answered_at_ms, cur.event_id)) it->second = i;
    }
  }
  std::map<int64_t, Standing> touched;  // user -> new standing
  for (const auto& [key, idx] : best) {
    const AnswerEvent& e = *events[idx];
    auto old = counted_.find(key);
    if (old != counted_.end() &&
        !earlier(e.answered_at_ms, e.event_id, old->second.answered_at_ms, old->second.event_id))
      continue;  // the stored answer still counts; this one is superseded
    auto [st, fresh] = touched.try_emplace(e.user_id);
    if (fresh) {
      auto cur = standings_.find(e.user_id);
      if (cur != standings_.end()) st->second = cur->second;
    }
    Standing& s = st->second;
    if (old != counted_.end()) {
      s.score -= old->second.points;
      s.correct -= old->second.correct ? 1 : 0;
      s.time_ms -= old->second.elapsed_ms;
    }
    s.score += e.points;
    s.correct += e.correct ? 1 : 0;
    s.time_ms += e.elapsed_ms;
    p.counted.push_back(CountedRow{quiz_id, e.user_id, e.question_id, e.event_id, e.answered_at_ms,
                                   static_cast<int32_t>(e.option_id), e.correct, e.points,
                                   e.elapsed_ms, old != counted_.end()});
    p.newly_counted.push_back(idx);
  }
  p.standings.reserve(touched.size());
  for (const auto& [user, s] : touched)
    p.standings.push_back(
        StandingRow{quiz_id, user, s.score, s.correct, s.time_ms, standings_.count(user) > 0});
  return p;
}

void QuizStandings::set_standing(int64_t user_id, const Standing& s) {
  auto [it, fresh] = standings_.try_emplace(user_id, s);
  if (!fresh) {
    order_.erase(RankKey{it->second.score, it->second.correct, it->second.time_ms, user_id});
    it->second = s;
  }
  order_.insert(RankKey{s.score, s.correct, s.time_ms, user_id});
}

void QuizStandings::apply(const Proposal& p) {
  for (const auto& r : p.counted) {
    counted_[{r.user_id, r.question_id}] =
        Counted{r.answered_at_ms, r.event_id, r.points, r.correct, r.elapsed_ms, r.option_id};
  }
  for (const auto& s : p.standings)
    set_standing(s.user_id, Standing{s.score, s.correct, s.time_ms});
}

void QuizStandings::load(const CountedRow& r) {
  const Key key{r.user_id, r.question_id};
  auto old = counted_.find(key);
  Standing s;
  if (auto cur = standings_.find(r.user_id); cur != standings_.end()) s = cur->second;
  if (old != counted_.end()) {
    s.score -= old->second.points;
    s.correct -= old->second.correct ? 1 : 0;
    s.time_ms -= old->second.elapsed_ms;
  }
  counted_[key] =
      Counted{r.answered_at_ms, r.event_id, r.points, r.correct, r.elapsed_ms, r.option_id};
  s.score += r.points;
  s.correct += r.correct ? 1 : 0;
  s.time_ms += r.elapsed_ms;
  set_standing(r.user_id, s);
}

std::vector<StandingEntry> QuizStandings::page(size_t offset, size_t limit) const {
  std::vector<StandingEntry> out;
  if (offset >= order_.size()) return out;
  auto it = order_.find_by_order(offset);
  for (size_t rank = offset + 1; it != order_.end() && out.size() < limit; ++it, ++rank) {
    out.push_back(StandingEntry{static_cast<int64_t>(rank), it->user_id,
                                Standing{it->score, it->correct, it->time_ms}});
  }
  return out;
}

std::optional<StandingEntry> QuizStandings::find(int64_t user_id) const {
  auto it = standings_.find(user_id);
  if (it == standings_.end()) return std::nullopt;
  const Standing& s = it->second;
  const auto rank = order_.order_of_key(RankKey{s.score, s.correct, s.time_ms, user_id}) + 1;
  return StandingEntry{static_cast<int64_t>(rank), user_id, s};
}

std::shared_ptr<StandingsBook::Slot> StandingsBook::find(int64_t quiz_id) const {
  std::shared_lock lock(mu_);
  auto it = slots_.find(quiz_id);
  return it == slots_.end() ? nullptr : it->second;
}

std::shared_ptr<StandingsBook::Slot> StandingsBook::get_or_create(int64_t quiz_id) {
  if (auto s = find(quiz_id)) return s;
  std::unique_lock lock(mu_);
  auto& slot = slots_[quiz_id];
  if (!slot) slot = std::make_shared<Slot>();
  return slot;
}

}  // namespace quizflow::stages
