// score stage: the standings of each quiz (spec §4), kept in memory as state derived from the
// counted answers, and the changes a committed batch makes to them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/events.h"
#include "core/mutex.h"
#include "core/standing.h"
#include "core/store.h"

namespace quizflow::stages {

// What one batch changes: counted answers that now count, players' new absolute standings, and
// which of the batch's events became the counted answer.
struct Proposal {
  int64_t quiz_id = 0;
  std::vector<CountedRow> counted;
  std::vector<StandingRow> standings;
  std::vector<size_t> newly_counted;  // indexes into the proposed events
};

// One quiz's standings. Not thread-safe (StandingsBook guards it).
class QuizStandings {
 public:
  QuizStandings();
  ~QuizStandings();
  QuizStandings(QuizStandings&&) noexcept;
  QuizStandings& operator=(QuizStandings&&) noexcept;

  // The effect of `events` (events new to the event log, any order, may repeat a key): for each
  // (user, question) the counted answer is the one with the smallest (answered_at, event_id)
  // among those already counted and these. Does not change state.
  Proposal propose(int64_t quiz_id, const std::vector<const AnswerEvent*>& events) const;

  // Applies a committed proposal.
  void apply(const Proposal& p);

  // Rebuild: adds a counted answer loaded from storage (no previous answer for its key).
  void load(const CountedRow& row);

  size_t players() const { return standings_.size(); }
  std::vector<StandingEntry> page(size_t offset, size_t limit) const;
  std::optional<StandingEntry> find(int64_t user_id) const;

 private:
  struct Counted {
    int64_t answered_at_ms = 0;
    std::string event_id;
    int64_t points = 0;
    bool correct = false;
    int64_t elapsed_ms = 0;
    int64_t option_id = 0;
  };
  using Key = std::pair<int64_t, int32_t>;  // (user_id, question_id)
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return static_cast<size_t>(static_cast<uint64_t>(k.first) * 0x9E3779B97F4A7C15ULL) ^
             static_cast<size_t>(k.second);
    }
  };
  struct Order;  // an order-statistic tree of RankKey (score.cpp): rank and page in O(log n)

  void set_standing(int64_t user_id, const Standing& s);

  std::unordered_map<Key, Counted, KeyHash> counted_;
  std::unordered_map<int64_t, Standing> standings_;
  std::unique_ptr<Order> order_;
};

// Thread-safe registry of per-quiz standings: a reader-writer lock per quiz.
class StandingsBook {
 public:
  // Runs f(const QuizStandings*) under the quiz's shared lock; nullptr when the quiz has none.
  template <typename F>
  auto read(int64_t quiz_id, F&& f) const {
    std::shared_ptr<Slot> slot = find(quiz_id);
    if (!slot) return f(static_cast<const QuizStandings*>(nullptr));
    ReaderLock lock(slot->mu);
    return f(static_cast<const QuizStandings*>(&slot->standings));
  }
  // Forgets every quiz (a restart reloads them). Readers still holding a quiz keep it alive.
  void clear() QF_EXCLUDES(mu_);

  // Runs f(QuizStandings&) under the quiz's exclusive lock, creating it when missing.
  template <typename F>
  auto write(int64_t quiz_id, F&& f) {
    std::shared_ptr<Slot> slot = get_or_create(quiz_id);
    WriterLock lock(slot->mu);
    return f(slot->standings);
  }

 private:
  struct Slot {
    SharedMutex mu;
    QuizStandings standings QF_GUARDED_BY(mu);
  };
  std::shared_ptr<Slot> find(int64_t quiz_id) const;
  std::shared_ptr<Slot> get_or_create(int64_t quiz_id);

  mutable SharedMutex mu_;
  std::unordered_map<int64_t, std::shared_ptr<Slot>> slots_ QF_GUARDED_BY(mu_);
};

}  // namespace quizflow::stages
