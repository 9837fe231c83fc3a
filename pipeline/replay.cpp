#include "pipeline/replay.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "stages/dedupe.h"
#include "stages/derive.h"
#include "stages/finalize.h"
#include "stages/score.h"
#include "stages/validate.h"

namespace quizflow {

std::vector<AnswerEvent> accepted_events(const QuizDef& def, std::span<const AnswerEvent> events,
                                         int64_t& rejected) {
  // A catalog of this quiz alone, open: the log holds what was accepted; only the definition
  // (questions, points, window) decides again, as validate does live.
  CatalogSnapshot catalog;
  catalog.quizzes.emplace(def.quiz_id, std::make_shared<const QuizDef>(def));
  std::vector<AnswerEvent> valid;
  valid.reserve(events.size());
  for (const AnswerEvent& e : events) {
    AnswerEvent v = e;
    if (stages::validate(v, catalog).status == ItemStatus::rejected) {
      ++rejected;
      continue;
    }
    valid.push_back(std::move(v));
  }
  return valid;
}

ReplayedQuiz replay_quiz(const QuizDef& def, std::span<const AnswerEvent> events) {
  ReplayedQuiz out;
  out.quiz_id = def.quiz_id;
  out.events = static_cast<int64_t>(events.size());
  const std::vector<AnswerEvent> valid = accepted_events(def, events, out.rejected);
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

double fraction(int64_t done, int64_t total) {
  return total > 0 ? std::min(1.0, static_cast<double>(done) / static_cast<double>(total)) : 1.0;
}

// Rebuilds quiz by quiz in place.
Result<ReplaySummary> rebuild_log(Store& store, const std::vector<int64_t>& quiz_ids,
                                  const ReplayOptions& options, const ReplayProgress& progress,
                                  int64_t total) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> quizzes = quiz_ids;
  if (quizzes.empty()) {
    auto all = store.log_quizzes();
    if (!all.ok()) return all.status();
    quizzes = std::move(*all);
  }
  std::sort(quizzes.begin(), quizzes.end());
  quizzes.erase(std::unique(quizzes.begin(), quizzes.end()), quizzes.end());
  // `jobs` workers take quizzes in turn, each on its own connection: one quiz's lock, read,
  // computation and write overlap another's. The summary is put together in quiz order.
  ReplaySummary sum;
  std::mutex mu;
  Status failed;                                      // the first failure; the others stop
  std::map<int64_t, std::vector<StandingDiff>> kept;  // per quiz, its first max_diffs
  std::map<int64_t, int64_t> changed;                 // per quiz with differences, how many
  std::vector<int64_t> unknown, finalized_changed;
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < quizzes.size();) {
      {
        std::lock_guard lock(mu);
        if (!failed.ok()) return;
      }
      const int64_t quiz = quizzes[i];
      int64_t rejected = 0;
      auto r = store.rebuild_quiz(
          quiz,
          [&](const QuizDef& def, const std::vector<AnswerEvent>& events) {
            ReplayedQuiz q = replay_quiz(def, events);
            rejected = q.rejected;
            return DerivedRows{std::move(q.counted), std::move(q.standings)};
          },
          nullptr);
      std::vector<StandingDiff> diffs;
      if (r.ok() && r->found) diffs = diff_standings(r->before, r->after);
      std::lock_guard lock(mu);
      if (!r.ok()) {
        if (failed.ok()) failed = r.status();
        return;
      }
      sum.events += r->events;
      if (!r->found) {
        if (r->events > 0 || !quiz_ids.empty()) unknown.push_back(quiz);
        continue;
      }
      ++sum.quizzes;
      sum.rejected += rejected;
      if (r->finalized && !diffs.empty()) finalized_changed.push_back(quiz);
      if (!diffs.empty()) changed[quiz] = static_cast<int64_t>(diffs.size());
      if (diffs.size() > options.max_diffs) diffs.resize(options.max_diffs);
      if (!diffs.empty()) kept[quiz] = std::move(diffs);
      if (progress) progress(sum.events, fraction(sum.events, total), since(t0));
    }
  };
  const size_t jobs = std::clamp<size_t>(options.jobs, 1, std::max<size_t>(1, quizzes.size()));
  {
    std::vector<std::jthread> workers;  // joined however this scope is left
    for (size_t j = 1; j < jobs; ++j) workers.emplace_back(work);
    work();
  }
  if (!failed.ok()) return failed;
  std::sort(unknown.begin(), unknown.end());
  std::sort(finalized_changed.begin(), finalized_changed.end());
  sum.unknown_quizzes = std::move(unknown);
  sum.finalized_changed = std::move(finalized_changed);
  for (const auto& [quiz, n] : changed) {
    ++sum.quizzes_changed;
    sum.players_changed += n;
  }
  for (const auto& [quiz, diffs] : kept)
    for (const StandingDiff& d : diffs)
      if (sum.first_diffs.size() < options.max_diffs)
        sum.first_diffs.push_back(ReplayDiff{quiz, d});
  sum.seconds = since(t0);
  return sum;
}

}  // namespace

Result<ReplaySummary> replay_log(Store& store, const std::vector<int64_t>& quiz_ids,
                                 const ReplayOptions& options, const ReplayProgress& progress) {
  int64_t total = 0;  // for the progress
  if (progress) {
    auto n = store.count_events(quiz_ids);
    if (!n.ok()) return n.status();
    total = *n;
  }
  if (!options.dry_run) return rebuild_log(store, quiz_ids, options, progress, total);
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
    if (progress) progress(sum.events, fraction(sum.events, total), since(t0));
  };
  auto read = store.read_events(quiz_ids,
                                [&](const AnswerEvent& e) {
                                  if (!events.empty() && events.front().quiz_id != e.quiz_id)
                                    finish_quiz();
                                  events.push_back(e);
                                  ++sum.events;
                                },
                                {});
  if (!read.ok()) return read.status();
  try {
    finish_quiz();
  } catch (const std::exception& e) {
    return Status::internal(e.what());
  }
  sum.seconds = since(t0);
  return sum;
}

RunReplayer::RunReplayer(Store& store, const ReplayOptions& options, ReplaySummary& sum)
    : store_(store), options_(options), sum_(sum) {}

Status RunReplayer::run(const QuizRun& r) {
  auto stored = store_.load_quiz(r.quiz_id);
  if (!stored.ok()) return stored.status();
  if (r.quiz && *stored && !((*stored)->def == r.quiz->def)) {
    sum_.conflicting_quizzes.push_back(r.quiz_id);  // never overwritten
    return Status();
  }
  if (!r.quiz && !*stored) {
    sum_.unknown_quizzes.push_back(r.quiz_id);
    return Status();
  }
  const QuizDef& def = r.quiz ? r.quiz->def : (*stored)->def;
  const bool finalized = *stored && (*stored)->state == QuizState::finalized;
  return options_.dry_run ? compare(r, def, finalized) : import(r, def);
}

Status RunReplayer::compare(const QuizRun& r, const QuizDef& def, bool finalized) {
  std::vector<AnswerEvent> events;
  auto read =
      store_.read_events({r.quiz_id}, [&](const AnswerEvent& e) { events.push_back(e); }, {});
  if (!read.ok()) return read.status();
  events.insert(events.end(), r.events.begin(), r.events.end());  // dedupe drops repeats
  const ReplayedQuiz q = replay_quiz(def, events);
  auto before = store_.load_standings(r.quiz_id);
  if (!before.ok()) return before.status();
  sum_.rejected += q.rejected;
  const auto diffs = diff_standings(*before, q.standings);
  if (finalized && !diffs.empty()) sum_.finalized_changed.push_back(r.quiz_id);
  count_diffs(sum_, r.quiz_id, diffs, options_.max_diffs);
  return Status();
}

Status RunReplayer::import(const QuizRun& r, const QuizDef& def) {
  int64_t rejected = 0;
  const std::vector<AnswerEvent> valid = accepted_events(def, r.events, rejected);
  // One transaction: the definition when missing, the answers, the rebuild, the state.
  QuizImport import;
  import.define = r.quiz ? &r.quiz->def : nullptr;
  import.append = valid;
  if (r.quiz && r.quiz->state != QuizState::open) import.state = r.quiz->state;
  if (import.state == QuizState::finalized) {
    // The quiz ran to its end where it was exported: its final standings from the rebuilt
    // ones, its rewards as they were granted there, no notifications.
    import.finalize = [&](std::vector<StandingRow> rebuilt) {
      FinalRows rows = stages::final_results(def, std::move(rebuilt));
    rows.rewards = r.quiz->rewards;
    rows.notifications.clear();
    return rows;
  };
}
auto rebuilt = store_.rebuild_quiz(
    r.quiz_id,
    [&](const QuizDef& d, const std::vector<AnswerEvent>& events) {
      ReplayedQuiz q = replay_quiz(d, events);
      return DerivedRows{std::move(q.counted), std::move(q.standings)};
    },
    &import);
if (!rebuilt.ok()) return rebuilt.status();
if (rebuilt->conflict) {  // stored by someone else meanwhile
  sum_.conflicting_quizzes.push_back(r.quiz_id);
  return Status();
}
if (!rebuilt->found) {
  sum_.unknown_quizzes.push_back(r.quiz_id);
  return Status();
}
if (rebuilt->created) ++sum_.quizzes_created;
sum_.rejected += rejected;
sum_.appended += rebuilt->appended;
if (rebuilt->refused > 0) {
  sum_.refused += rebuilt->refused;
  sum_.finalized_refusing.push_back(r.quiz_id);
}
const auto diffs = diff_standings(rebuilt->before, rebuilt->after);
if (rebuilt->finalized && !diffs.empty()) sum_.finalized_changed.push_back(r.quiz_id);
count_diffs(sum_, r.quiz_id, diffs, options_.max_diffs);
return Status();
}  // namespace quizflow

Result<ReplaySummary> replay_runs(Store& store, RunSource& source, const ReplayOptions& options,
                                  const ReplayProgress& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  ReplaySummary sum;
  RunReplayer replayer(store, options, sum);
  for (;;) {
    auto run = source.next();
    if (!run.ok()) return run.status();
    if (!*run) break;
    sum.events += static_cast<int64_t>((*run)->events.size());
    if (Status s = replayer.run(**run); !s.ok()) return s;
    if (progress) progress(sum.events, source.fraction(), since(t0));
  }
  sum.seconds = since(t0);
  return sum;
}

}  // namespace quizflow
