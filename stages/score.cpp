#include "stages/score.h"

#include <algorithm>
#include <ext/pb_ds/assoc_container.hpp>
#include <ext/pb_ds/tree_policy.hpp>
#include <functional>

namespace quizflow::stages {

struct QuizStandings::Order
    : __gnu_pbds::tree<RankKey, __gnu_pbds::null_type, std::less<RankKey>, __gnu_pbds::rb_tree_tag,
                       __gnu_pbds::tree_order_statistics_node_update> {};

QuizStandings::QuizStandings() : order_(std::make_unique<Order>()) {}
QuizStandings::~QuizStandings() = default;
QuizStandings::QuizStandings(QuizStandings&&) noexcept = default;
QuizStandings& QuizStandings::operator=(QuizStandings&&) noexcept = default;

namespace {

bool earlier(int64_t at_a, const std::string& id_a, int64_t at_b, const std::string& id_b) {
  return at_a != at_b ? at_a < at_b : id_a < id_b;
}

}  // namespace

Proposal QuizStandings::propose(int64_t quiz_id,
                                const std::vector<const AnswerEvent*>& events) const {
  Proposal p;
  p.quiz_id = quiz_id;
  // The batch's candidates in key order, the earliest answer of each key first.
  std::vector<std::pair<Key, size_t>> cand;
  cand.reserve(events.size());
  for (size_t i = 0; i < events.size(); ++i)
    cand.emplace_back(Key{events[i]->user_id, events[i]->question_id}, i);
  std::sort(cand.begin(), cand.end(), [&](const auto& x, const auto& y) {
    if (x.first != y.first) return x.first < y.first;
    const AnswerEvent& a = *events[x.second];
    const AnswerEvent& b = *events[y.second];
    return earlier(a.answered_at_ms, a.event_id, b.answered_at_ms, b.event_id);
  });
  // Players come in order: one running standing at a time.
  int64_t user = 0;
  bool touched = false, stored = false;
  Standing st;
  auto finish_player = [&] {
    if (touched)
      p.standings.push_back(StandingRow{quiz_id, user, st.score, st.correct, st.time_ms, stored});
  };
  for (size_t k = 0; k < cand.size(); ++k) {
    if (k > 0 && cand[k].first == cand[k - 1].first) continue;  // a later answer of the key
    const auto& [key, idx] = cand[k];
    const AnswerEvent& e = *events[idx];
    auto old = counted_.find(key);
    if (old != counted_.end() &&
        !earlier(e.answered_at_ms, e.event_id, old->second.answered_at_ms, old->second.event_id))
      continue;  // the stored answer still counts; this one is superseded
    if (!touched || user != e.user_id) {
      finish_player();
      user = e.user_id;
      touched = true;
      auto cur = standings_.find(user);
      stored = cur != standings_.end();
      st = stored ? cur->second : Standing{};
    }
    if (old != counted_.end()) {
      st.score -= old->second.points;
      st.correct -= old->second.correct ? 1 : 0;
      st.time_ms -= old->second.elapsed_ms;
    }
    st.score += e.points;
    st.correct += e.correct ? 1 : 0;
    st.time_ms += e.elapsed_ms;
    p.counted.push_back(CountedRow{quiz_id, e.user_id, e.question_id, e.event_id, e.answered_at_ms,
                                   static_cast<int32_t>(e.option_id), e.correct, e.points,
                                   e.elapsed_ms, old != counted_.end()});
    p.newly_counted.push_back(idx);
  }
  finish_player();
  return p;
}

void QuizStandings::set_standing(int64_t user_id, const Standing& s) {
  auto [it, fresh] = standings_.try_emplace(user_id, s);
  if (!fresh) {
    order_->erase(RankKey{it->second.score, it->second.correct, it->second.time_ms, user_id});
    it->second = s;
  }
  order_->insert(RankKey{s.score, s.correct, s.time_ms, user_id});
}

std::vector<RankMove> QuizStandings::rank_moves(const Proposal& p, const RankPolicy& policy) const {
  std::vector<RankMove> out;
  const size_t n = policy.top_n;
  if (n == 0 || p.standings.empty()) return out;
  // The new top N: untouched players keep their order, so only the first N + |touched| of the
  // old order can be in it (a player below that has N untouched players ahead of it).
  std::unordered_map<int64_t, int64_t> old_rank;  // of the old top N + touched
  std::unordered_map<int64_t, const StandingRow*> touched;
  for (const StandingRow& r : p.standings) touched.emplace(r.user_id, &r);
  std::vector<RankKey> cand;
  for (const StandingEntry& e : page(0, n + p.standings.size())) {
    old_rank.emplace(e.user_id, e.rank);
    if (!touched.count(e.user_id))
      cand.push_back(RankKey{e.standing.score, e.standing.correct, e.standing.time_ms, e.user_id});
  }
  for (const StandingRow& r : p.standings)
    cand.push_back(RankKey{r.score, r.correct, r.time_ms, r.user_id});
  const size_t k = std::min(n, cand.size());
  std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(k), cand.end());
  for (size_t i = 0; i < k; ++i) {
    const int64_t user = cand[i].user_id;
    const auto rank = static_cast<int64_t>(i + 1);
    int64_t before = 0;
    if (auto it = notified_.find(user); it != notified_.end()) {
      if (it->second.rank == rank) continue;
      if (policy.now_ms - it->second.at_ms < policy.coalesce_ms) continue;  // told recently
      before = it->second.rank;
    } else if (auto o = old_rank.find(user); o != old_rank.end()) {
      before = o->second;
      if (before == rank) continue;
    } else if (auto f = find(user)) {
      before = f->rank;
    }
    out.push_back(RankMove{user, rank, before});
  }
  return out;
}

void QuizStandings::apply(const Proposal& p) {
  for (const auto& r : p.counted) {
    counted_[{r.user_id, r.question_id}] =
        Counted{r.answered_at_ms, r.event_id, r.points, r.correct, r.elapsed_ms, r.option_id};
  }
  for (const auto& s : p.standings)
    set_standing(s.user_id, Standing{s.score, s.correct, s.time_ms});
  for (const RankMove& m : p.moves) notified_[m.user_id] = Notified{m.rank, p.policy.now_ms};
  // Players who left the top N are forgotten: coming back is a move again.
  if (!notified_.empty() && !p.standings.empty()) {
    const size_t n = p.policy.top_n;
    for (auto it = notified_.begin(); it != notified_.end();) {
      const auto f = find(it->first);
      if (!f || f->rank > static_cast<int64_t>(n))
        it = notified_.erase(it);
      else
        ++it;
    }
  }
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
  if (offset >= order_->size()) return out;
  auto it = order_->find_by_order(offset);
  for (size_t rank = offset + 1; it != order_->end() && out.size() < limit; ++it, ++rank) {
    out.push_back(StandingEntry{static_cast<int64_t>(rank), it->user_id,
                                Standing{it->score, it->correct, it->time_ms}});
  }
  return out;
}

std::optional<StandingEntry> QuizStandings::find(int64_t user_id) const {
  auto it = standings_.find(user_id);
  if (it == standings_.end()) return std::nullopt;
  const Standing& s = it->second;
  const auto rank = order_->order_of_key(RankKey{s.score, s.correct, s.time_ms, user_id}) + 1;
  return StandingEntry{static_cast<int64_t>(rank), user_id, s};
}

namespace {
RankKey key_of(const StandingRow& r) { return RankKey{r.score, r.correct, r.time_ms, r.user_id}; }
}  // namespace

std::vector<StandingEntry> rank_page(std::vector<StandingRow> rows, size_t offset, size_t limit) {
  std::vector<StandingEntry> out;
  if (offset >= rows.size()) return out;
  const size_t end = offset + std::min(limit, rows.size() - offset);
  std::partial_sort(
      rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(end), rows.end(),
      [](const StandingRow& a, const StandingRow& b) { return key_of(a) < key_of(b); });
  for (size_t i = offset; i < end; ++i)
    out.push_back(StandingEntry{static_cast<int64_t>(i + 1), rows[i].user_id,
                                Standing{rows[i].score, rows[i].correct, rows[i].time_ms}});
  return out;
}

std::optional<StandingEntry> rank_of(const std::vector<StandingRow>& rows, int64_t user_id) {
  const auto it = std::find_if(rows.begin(), rows.end(),
                               [&](const StandingRow& r) { return r.user_id == user_id; });
  if (it == rows.end()) return std::nullopt;
  const RankKey key = key_of(*it);
  const auto ahead = std::count_if(rows.begin(), rows.end(),
                                   [&](const StandingRow& r) { return key_of(r) < key; });
  return StandingEntry{ahead + 1, user_id, Standing{it->score, it->correct, it->time_ms}};
}

std::shared_ptr<StandingsBook::Slot> StandingsBook::find(int64_t quiz_id) const {
  ReaderLock lock(mu_);
  auto it = slots_.find(quiz_id);
  return it == slots_.end() ? nullptr : it->second;
}

std::vector<std::pair<int64_t, int64_t>> StandingsBook::versions() const {
  std::vector<std::shared_ptr<Slot>> slots;
  std::vector<int64_t> ids;
  {
    ReaderLock lock(mu_);
    slots.reserve(slots_.size());
    for (const auto& [quiz, slot] : slots_) {
      ids.push_back(quiz);
      slots.push_back(slot);
    }
  }
  std::vector<std::pair<int64_t, int64_t>> out;
  out.reserve(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    ReaderLock lock(slots[i]->mu);
    if (slots[i]->loaded) out.emplace_back(ids[i], slots[i]->version);
  }
  return out;
}

bool StandingsBook::refresh(int64_t quiz_id, const StoredCounted& stored) {
  std::shared_ptr<Slot> slot = find(quiz_id);
  if (!slot) return false;
  {
    ReaderLock lock(slot->mu);
    if (!slot->loaded || stored.version <= slot->version) return false;
  }
  QuizStandings fresh;  // built without the lock: readers and batches go on meanwhile
  for (const CountedRow& r : stored.rows) fresh.load(r);
  WriterLock lock(slot->mu);
  if (!slot->loaded || stored.version <= slot->version) return false;
  slot->standings = std::move(fresh);
  slot->version = stored.version;
  return true;
}

bool StandingsBook::loaded(int64_t quiz_id) const {
  std::shared_ptr<Slot> slot = find(quiz_id);
  if (!slot) return false;
  ReaderLock lock(slot->mu);
  return slot->loaded;
}

int64_t StandingsBook::version(int64_t quiz_id) const {
  std::shared_ptr<Slot> slot = find(quiz_id);
  if (!slot) return -1;
  ReaderLock lock(slot->mu);
  return slot->loaded ? slot->version : -1;
}

void StandingsBook::erase(int64_t quiz_id) {
  WriterLock lock(mu_);
  slots_.erase(quiz_id);
}

size_t StandingsBook::size() const {
  ReaderLock lock(mu_);
  return slots_.size();
}

void StandingsBook::clear() {
  WriterLock lock(mu_);
  slots_.clear();
}

std::shared_ptr<StandingsBook::Slot> StandingsBook::get_or_create(int64_t quiz_id) {
  if (auto s = find(quiz_id)) return s;
  WriterLock lock(mu_);
  auto& slot = slots_[quiz_id];
  if (!slot) slot = std::make_shared<Slot>();
  return slot;
}

}  // namespace quizflow::stages
