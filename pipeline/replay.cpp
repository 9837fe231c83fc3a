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

namespace {

void count_diffs(ReplaySummary& sum, int64_t quiz, const std::vector<StandingDiff>& diffs,
                 size_t max_diffs) {
  ++sum.quizzes;
  if (!diffs.empty()) ++sum.quizzes_changed;
  sum.players_changed += static_cast<int64_t>(diffs.size());
  for (const StandingDiff& d : diffs) {
    if (sum.first_diffs.size() >= max_diffs) break;
    sum.first_diffs.push_back(ReplayDiff{quiz, d});
  }
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Rebuilds quiz by quiz in place.
Result<ReplaySummary> rebuild_log(Store& store, const std::vector<int64_t>& quiz_ids,
                                  const ReplayOptions& options, const ReplayProgress& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> quizzes = quiz_ids;
  if (quizzes.empty()) {
    auto all = store.log_quizzes();
    if (!all.ok()) return all.status();
    quizzes = std::move(*all);
  }
  std::sort(quizzes.begin(), quizzes.end());
  quizzes.erase(std::unique(quizzes.begin(), quizzes.end()), quizzes.end());
  ReplaySummary sum;
  for (int64_t quiz : quizzes) {
    int64_t rejected = 0;
    auto r =
        store.rebuild_quiz(quiz, [&](const QuizDef& def, const std::vector<AnswerEvent>& events) {
          ReplayedQuiz q = replay_quiz(def, events);
          rejected = q.rejected;
          return DerivedRows{std::move(q.counted), std::move(q.standings)};
        });
    if (!r.ok()) return r.status();
    sum.events += r->events;
    if (!r->found) {
      if (r->events > 0 || !quiz_ids.empty()) sum.unknown_quizzes.push_back(quiz);
      continue;
    }
    sum.rejected += rejected;
    const auto diffs = diff_standings(r->before, r->after);
    if (r->finalized && !diffs.empty()) sum.finalized_changed.push_back(quiz);
    count_diffs(sum, quiz, diffs, options.max_diffs);
    if (progress) progress(sum.events, since(t0));
  }
  sum.seconds = since(t0);
  return sum;
}

}  // namespace

Result<ReplaySummary> replay_log(Store& store, const std::vector<int64_t>& quiz_ids,
                                 const ReplayOptions& options, const ReplayProgress& progress) {
  if (!options.dry_run) return rebuild_log(store, quiz_ids, options, progress);
  const auto t0 = std::chrono::steady_clock::now();
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
    sum.rejected += r.rejected;
    if ((*rec)->state == QuizState::finalized && !diffs.empty())
      sum.finalized_changed.push_back(quiz);
    count_diffs(sum, quiz, diffs, options.max_diffs);
    events.clear();
    if (progress) progress(sum.events, since(t0));
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
  sum.seconds = since(t0);
  return sum;
}

}  // namespace quizflow
