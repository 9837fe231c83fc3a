// Where `quizflow replay --from file:` / `quizflow import` get their events: a source of runs,
// each one quiz's events with what the source says of the quiz. ingress/event_file.h reads
// them from an export file; pipeline/replay.h replays them.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/events.h"
#include "core/quiz.h"
#include "core/status.h"
#include "core/store.h"

namespace quizflow {

// A quiz as a source gives it: definition, state, rewards granted.
struct SourceQuiz {
  QuizDef def;
  QuizState state = QuizState::open;
  std::vector<RewardRow> rewards;  // granted (finalized quizzes)
  std::optional<int64_t> events;   // how many of its answers the source says follow
};

// One quiz's events, with its SourceQuiz when the source has one.
struct QuizRun {
  int64_t quiz_id = 0;
  std::optional<SourceQuiz> quiz;
  std::vector<AnswerEvent> events;
};

class RunSource {
 public:
  virtual ~RunSource() = default;
  // The next run; nullopt after the last. Not ok: the source is broken (e.g. `invalid` at a
  // line of a file); nothing after it is read.
  virtual Result<std::optional<QuizRun>> next() = 0;
  // How much of the source was read (0 … 1; 0 when unknown).
  virtual double fraction() const = 0;
};

}  // namespace quizflow
