#include "pipeline/replay.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <stdexcept>
#include <tuple>

#include "stages/dedupe.h"
#include "stages/derive.h"
#include "stages/score.h"
#include "stages/validate.h"

namespace quizflow {

ReplayedQuiz replay_quiz(const QuizDef& def, std::span<const AnswerEvent> events) {
  ReplayedQuiz out;
  out.quiz_id = def.quiz_id;
  out.events = static_cast<int64_t>(events.size());
  // A catalog of this quiz alone, open: the log holds what was accepted; only the definition
  // (questions, points, window) decides again, as validate does live.
  CatalogSnapshot catalog;
  catalog.quizzes.emplace(def.quiz_id, std::make_shared<const QuizDef>(def));
  std::vector<AnswerEvent> valid;
  valid.reserve(events.size());
  for (const AnswerEvent& e : events) {
    AnswerEvent v = e;
    if (stages::validate(v, catalog).status == ItemStatus::rejected) {
      ++out.rejected;
      continue;
    }
    valid.push_back(std::move(v));
  }
  std::vector<const AnswerEvent*> in_order;
  in_order.reserve(valid.size());
  for (const AnswerEvent& e : valid) in_order.push_back(&e);
  // One transaction's worth of the live rules: every event is new to an empty quiz.
  const stages::DistinctEvents distinct = stages::dedupe(in_order);
  stages::StandingsBook book;
  book.add_empty(def.quiz_id);
  const std::vector<bool> inserted(distinct.events.size(), true);
  const stages::TxnChanges changes =
      stages::derive(distinct, inserted, book, stages::RankPolicy{0, 0, 0});
  DerivedRows rows = stages::rows_of(changes);
  std::sort(rows.counted.begin(), rows.counted.end(), [](const CountedRow& a, const CountedRow& b) {
    return std::tie(a.user_id, a.question_id) < std::tie(b.user_id, b.question_id);
  });
  std::sort(rows.standings.begin(), rows.standings.end(),
            [](const StandingRow& a, const StandingRow& b) { return a.user_id < b.user_id; });
  out.counted = std::move(rows.counted);
  out.standings = std::move(rows.standings);
  return out;
}

std::vector<StandingDiff> diff_standings(std::span<const StandingRow> stored,
                                         std::span<const StandingRow> replayed) {
  std::map<int64_t, StandingDiff> by_user;
  for (const StandingRow& r : stored)
    by_user[r.user_id].stored = Standing{r.score, r.correct, r.time_ms};
  for (const StandingRow& r : replayed)
    by_user[r.user_id].replayed = Standing{r.score, r.correct, r.time_ms};
  std::vector<StandingDiff> out;
  for (auto& [user, d] : by_user) {
    if (d.stored == d.replayed) continue;
    d.user_id = user;
    out.push_back(d);
  }
  return out;
}

Result<ReplaySummary> replay_log(Store& store, const std::vector<int64_t>& quiz_ids,
                                 size_t max_diffs, const ReplayProgress& progress) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  ReplaySummary sum;
  std::vector<AnswerEvent> events;  // the current quiz's
  auto finish_quiz = [&] {
    if (events.empty()) return;
    const int64_t quiz = events.front().quiz_id;
    auto rec = store.load_quiz(quiz);
    if (!rec.ok()) throw std::runtime_error(rec.status().to_string());
    if (!*rec) {
      sum.unknown_quizzes.push_back(quiz);
      events.clear();
      return;
    }
    const ReplayedQuiz r = replay_quiz((*rec)->def, events);
    auto stored = store.load_standings(quiz);
    if (!stored.ok()) throw std::runtime_error(stored.status().to_string());
    const auto diffs = diff_standings(*stored, r.standings);
    ++sum.quizzes;
    sum.rejected += r.rejected;
    if (!diffs.empty()) ++sum.quizzes_changed;
    sum.players_changed += static_cast<int64_t>(diffs.size());
    for (const StandingDiff& d : diffs) {
      if (sum.first_diffs.size() >= max_diffs) break;
      sum.first_diffs.push_back(ReplayDiff{quiz, d});
    }
    events.clear();
    if (progress) progress(sum.events, std::chrono::duration<double>(Clock::now() - t0).count());
  };
  auto read = store.read_events(quiz_ids, [&](const AnswerEvent& e) {
    if (!events.empty() && events.front().quiz_id != e.quiz_id) finish_quiz();
    events.push_back(e);
    ++sum.events;
  });
  if (!read.ok()) return read.status();
  try {
    finish_quiz();
  } catch (const std::exception& e) {
    return Status::internal(e.what());
  }
  sum.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return sum;
}

}  // namespace quizflow
