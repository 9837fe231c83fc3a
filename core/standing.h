// A player's standing in a quiz and the standings order (spec §4): vocabulary shared by the
// score stage, the engine's read API and the HTTP bodies.
#pragma once

#include <cstdint>

namespace quizflow {

struct Standing {
  int64_t score = 0;
  int64_t correct = 0;
  int64_t time_ms = 0;
  bool operator==(const Standing&) const = default;
};

// Sort key of the standings order: score desc, correct desc, time_ms asc, user_id asc.
struct RankKey {
  int64_t score, correct, time_ms, user_id;
  bool operator<(const RankKey& o) const {
    if (score != o.score) return score > o.score;
    if (correct != o.correct) return correct > o.correct;
    if (time_ms != o.time_ms) return time_ms < o.time_ms;
    return user_id < o.user_id;
  }
};

struct StandingEntry {
  int64_t rank = 0;  // 1-based position in the standings order
  int64_t user_id = 0;
  Standing standing;
};

}  // namespace quizflow
