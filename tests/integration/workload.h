// A randomized answer workload and an independent computation of the standings it must give
// (spec §4), written without the engine's code.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/quiz.h"
#include "core/time_util.h"
#include "tools/api_json.h"

namespace quizflow::testing {

struct SentAnswer {
  std::string json;  // the answer object as sent
  std::string event_id;
  int64_t quiz_id = 0, user_id = 0, question_id = 0, option_id = 0, answered_at_ms = 0,
          elapsed_ms = 0;
  bool valid = false;   // passes schema and catalog rules
  bool resend = false;  // an identical copy of an earlier answer
};

struct ExpectedStanding {
  int64_t quiz_id, user_id, score, correct, time_ms;
  bool operator==(const ExpectedStanding&) const = default;
};

struct Workload {
  std::vector<QuizDef> quizzes;
  std::vector<SentAnswer> answers;
  size_t distinct_valid = 0, resends = 0, invalid = 0;
};

inline std::string answer_json(const SentAnswer& a) {
  return tools::answer_json({a.event_id, a.quiz_id, a.user_id, a.question_id, a.option_id,
                             format_rfc3339_ms(a.answered_at_ms), a.elapsed_ms});
}

// `valid_events` distinct valid events (with supersedes and answered_at ties), `resends`
// identical re-sends and `invalid` items of every rejection kind, in a random order.
inline Workload make_workload(uint32_t seed, size_t valid_events, size_t resends, size_t invalid,
                              int64_t quiz_base = 100, int quiz_count = 3) {
  std::mt19937_64 rng(seed);
  auto uni = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  Workload w;
  const int64_t opens = *parse_rfc3339_ms("2026-01-01T00:00:00Z");
  const int64_t closes = *parse_rfc3339_ms("2027-01-01T00:00:00Z");
  for (int q = 1; q <= quiz_count; ++q) {
    QuizDef d;
    d.quiz_id = quiz_base + q;
    d.title = "workload " + std::to_string(q);
    d.opens_at_ms = opens;
    d.closes_at_ms = closes;
    for (int k = 1; k <= 20; ++k) {
      Question qu;
      qu.question_id = k;
      qu.option_count = static_cast<int32_t>(uni(2, 10));
      qu.correct_option = static_cast<int32_t>(uni(0, qu.option_count - 1));
      qu.points = uni(1, 100000);
      qu.time_limit_ms = uni(1000, 600000);
      d.questions.push_back(qu);
    }
    w.quizzes.push_back(d);
  }
  std::vector<SentAnswer> valid;
  for (size_t i = 0; i < valid_events; ++i) {
    SentAnswer a;
    a.event_id = "w" + std::to_string(seed) + "-" + std::to_string(i);
    const QuizDef& q = w.quizzes[static_cast<size_t>(uni(0, quiz_count - 1))];
    a.quiz_id = q.quiz_id;
    a.user_id = uni(1, 300);
    const Question& qu = q.questions[static_cast<size_t>(uni(0, 19))];
    a.question_id = qu.question_id;
    a.option_id = uni(0, qu.option_count - 1);
    a.elapsed_ms = uni(0, qu.time_limit_ms);
    // A narrow time range makes answered_at ties (broken by event_id) common.
    a.answered_at_ms = opens + 1000 * uni(0, 50);
    a.valid = true;
    a.json = answer_json(a);
    valid.push_back(a);
  }
  w.distinct_valid = valid.size();
  std::vector<SentAnswer> all = valid;
  for (size_t i = 0; i < resends; ++i) {
    SentAnswer a = valid[static_cast<size_t>(uni(0, static_cast<int64_t>(valid.size()) - 1))];
    a.resend = true;
    all.push_back(a);
  }
  w.resends = resends;
  for (size_t i = 0; i < invalid; ++i) {
    SentAnswer a = valid[static_cast<size_t>(uni(0, static_cast<int64_t>(valid.size()) - 1))];
    a.event_id = "bad" + std::to_string(seed) + "-" + std::to_string(i);
    a.valid = false;
    const QuizDef& q = *std::find_if(w.quizzes.begin(), w.quizzes.end(),
                                     [&](const QuizDef& d) { return d.quiz_id == a.quiz_id; });
    const Question& qu = *q.find_question(static_cast<int32_t>(a.question_id));
    switch (i % 7) {
      case 0:
        a.quiz_id = 999999;
        break;  // unknown_quiz
      case 1:
        a.question_id = 77;
        break;  // unknown_question
      case 2:
        a.option_id = qu.option_count;
        break;  // option_out_of_range
      case 3:
        a.elapsed_ms = qu.time_limit_ms + 1;
        break;  // elapsed_out_of_range
      case 4:
        a.answered_at_ms = closes;
        break;  // quiz_not_open
      case 5:
        a.option_id = -1;
        break;  // option_out_of_range
      case 6:
        break;  // schema (below)
    }
    a.json = answer_json(a);
    if (i % 7 == 6) a.json = "{\"event_id\":\"" + a.event_id + "\",\"quiz_id\":\"x\"}";
    all.push_back(a);
  }
  w.invalid = invalid;
  std::shuffle(all.begin(), all.end(), rng);
  w.answers = std::move(all);
  return w;
}

// Standings the workload must produce, computed directly from the rules of spec §4.
inline std::vector<ExpectedStanding> expected_standings(const Workload& w) {
  // Counted answer per (quiz, user, question): smallest (answered_at, event_id).
  std::map<std::tuple<int64_t, int64_t, int64_t>, const SentAnswer*> counted;
  for (const auto& a : w.answers) {
    if (!a.valid) continue;
    auto key = std::make_tuple(a.quiz_id, a.user_id, a.question_id);
    auto it = counted.find(key);
    if (it == counted.end() || std::make_pair(a.answered_at_ms, a.event_id) <
                                   std::make_pair(it->second->answered_at_ms, it->second->event_id))
      counted[key] = &a;
  }
  std::map<std::pair<int64_t, int64_t>, ExpectedStanding> per_player;
  for (const auto& [key, a] : counted) {
    const QuizDef& q = *std::find_if(w.quizzes.begin(), w.quizzes.end(),
                                     [&](const QuizDef& d) { return d.quiz_id == a->quiz_id; });
    const Question& qu = *q.find_question(static_cast<int32_t>(a->question_id));
    auto& s = per_player
                  .try_emplace({a->quiz_id, a->user_id},
                               ExpectedStanding{a->quiz_id, a->user_id, 0, 0, 0})
                  .first->second;
    if (a->option_id == qu.correct_option) {
      // floor(points * elapsed / (2 * limit)) on non-negative integers.
      s.score += qu.points - (qu.points * a->elapsed_ms) / (2 * qu.time_limit_ms);
      s.correct += 1;
    }
    s.time_ms += a->elapsed_ms;
  }
  std::vector<ExpectedStanding> out;
  for (auto& [k, s] : per_player) out.push_back(s);
  std::sort(out.begin(), out.end(), [](const ExpectedStanding& a, const ExpectedStanding& b) {
    if (a.quiz_id != b.quiz_id) return a.quiz_id < b.quiz_id;
    if (a.score != b.score) return a.score > b.score;
    if (a.correct != b.correct) return a.correct > b.correct;
    if (a.time_ms != b.time_ms) return a.time_ms < b.time_ms;
    return a.user_id < b.user_id;
  });
  return out;
}

}  // namespace quizflow::testing
