// score stage: the standings of each quiz (spec §4), kept in memory as state derived from the
// counted answers, and the changes a committed batch makes to them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/events.h"
#include "core/mutex.h"
#include "core/standing.h"
#include "core/status.h"
#include "core/store.h"

namespace quizflow::stages {

// A player who entered or moved within the top N (a `rank_changed` notification).
struct RankMove {
  int64_t user_id = 0;
  int64_t rank = 0;
  int64_t previous_rank = 0;  // the rank last notified, else the rank before; 0: had none
  bool operator==(const RankMove&) const = default;
};

// Which rank moves are notified (spec §4 rank_changed).
struct RankPolicy {
  size_t top_n = 10;        // 0: none
  int64_t coalesce_ms = 0;  // at most one rank_changed per player per window
  int64_t now_ms = 0;       // the clock of the transaction
};

// What one batch changes: counted answers that now count, players' new absolute standings,
// which of the batch's events became the counted answer, and the rank moves to notify.
struct Proposal {
  int64_t quiz_id = 0;
  std::vector<CountedRow> counted;
  std::vector<StandingRow> standings;
  std::vector<size_t> newly_counted;  // indexes into the proposed events
  std::vector<RankMove> moves;        // see QuizStandings::rank_moves
  RankPolicy policy;
  int64_t version = 0;  // the version of the standings it was computed from (StandingsBook)
};

// The standings order applied to stored rows, for a quiz whose standings are not held in memory
// (another instance owns it): one page of it (`total` is rows.size()), and one player's entry.
// Equal to QuizStandings::page and ::find over the same standings.
std::vector<StandingEntry> rank_page(std::vector<StandingRow> rows, size_t offset, size_t limit);
std::optional<StandingEntry> rank_of(const std::vector<StandingRow>& rows, int64_t user_id);

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

  // The players in the top `policy.top_n` once `p` is applied whose rank differs from the one
  // last notified to them (or, when none was, from their rank before `p`), except those
  // notified less than `policy.coalesce_ms` ago: their move is told by a later batch, still
  // against the rank last told. A player who leaves the top N is forgotten (re-entering is a
  // move). Does not change state.
  std::vector<RankMove> rank_moves(const Proposal& p, const RankPolicy& policy) const;

  // Applies a committed proposal (standings, counted answers, notified ranks).
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

  struct Notified {
    int64_t rank = 0;
    int64_t at_ms = 0;
  };

  std::unordered_map<Key, Counted, KeyHash> counted_;
  std::unordered_map<int64_t, Standing> standings_;
  std::unique_ptr<Order> order_;
  std::unordered_map<int64_t, Notified> notified_;  // players of the top N last told their rank
};

// Thread-safe registry of the standings of the quizzes in memory: a reader-writer lock per quiz.
// A quiz's standings are loaded from its stored counted answers on first use (ensure_loaded)
// and leave memory when it is finalized (erase).
class StandingsBook {
 public:
  // Runs f(const QuizStandings*) under the quiz's shared lock; nullptr when the quiz is not in
  // memory or not loaded yet.
  template <typename F>
  auto read(int64_t quiz_id, F&& f) const {
    std::shared_ptr<Slot> slot = find(quiz_id);
    if (!slot) return f(static_cast<const QuizStandings*>(nullptr));
    ReaderLock lock(slot->mu);
    return f(static_cast<const QuizStandings*>(slot->loaded ? &slot->standings : nullptr));
  }

  // As read, with the version of the standings read: f(const QuizStandings*, int64_t version).
  template <typename F>
  auto read_versioned(int64_t quiz_id, F&& f) const {
    std::shared_ptr<Slot> slot = find(quiz_id);
    if (!slot) return f(static_cast<const QuizStandings*>(nullptr), int64_t{-1});
    ReaderLock lock(slot->mu);
    if (!slot->loaded) return f(static_cast<const QuizStandings*>(nullptr), int64_t{-1});
    return f(static_cast<const QuizStandings*>(&slot->standings), slot->version);
  }

  // Makes sure the quiz's stored state is in memory: the first call runs `load()` (returning
  // Result<StoredCounted>, e.g. a database query) under the quiz's exclusive lock and rebuilds
  // the standings from it; later calls return at once. Not ok: nothing was loaded (a later call
  // tries again).
  template <typename Load>
  Status ensure_loaded(int64_t quiz_id, Load&& load) {
    std::shared_ptr<Slot> slot = get_or_create(quiz_id);
    {
      ReaderLock lock(slot->mu);
      if (slot->loaded) return Status();
    }
    WriterLock lock(slot->mu);
    if (slot->loaded) return Status();
    auto rows = load();
    if (!rows.ok()) return rows.status();
    for (const CountedRow& r : rows->rows) slot->standings.load(r);
    slot->version = rows->version;
    slot->loaded = true;
    return Status();
  }
  // Replaces a loaded quiz's standings with a newer stored version (a replay rebuilt them):
  // `stored` (read by the caller, no lock held) is installed only when its version is above
  // the one in memory; true when it was. Changes derived from the older version are not
  // applied after it (update_at): the stored rows of a newer version already hold every change
  // committed against an older one.
  bool refresh(int64_t quiz_id, const StoredCounted& stored);
  // The loaded quizzes and the version of their standings in memory.
  std::vector<std::pair<int64_t, int64_t>> versions() const QF_EXCLUDES(mu_);
  bool loaded(int64_t quiz_id) const;
  // The version of the quiz's standings in memory (StoredCounted::version); -1 when not loaded.
  int64_t version(int64_t quiz_id) const;
  // A quiz known to have nothing stored yet (just created): loaded, empty.
  void add_empty(int64_t quiz_id) {
    std::shared_ptr<Slot> slot = get_or_create(quiz_id);
    WriterLock lock(slot->mu);
    slot->loaded = true;
  }

  // Forgets one quiz (finalized: its standings are read from storage from now on).
  void erase(int64_t quiz_id) QF_EXCLUDES(mu_);
  // Forgets every quiz (a restart reloads them). Readers still holding a quiz keep it alive.
  void clear() QF_EXCLUDES(mu_);
  size_t size() const QF_EXCLUDES(mu_);  // quizzes in memory

  // Runs f(QuizStandings&) under the quiz's exclusive lock when the quiz is in memory, loaded
  // and its standings are still at `version`; false (f not run) otherwise — it left memory
  // (finalized) or was reloaded at a newer version (refresh) meanwhile.
  template <typename F>
  bool update_at(int64_t quiz_id, int64_t version, F&& f) {
    std::shared_ptr<Slot> slot = find(quiz_id);
    if (!slot) return false;
    WriterLock lock(slot->mu);
    if (!slot->loaded || slot->version != version) return false;
    f(slot->standings);
    return true;
  }

  // Runs f(QuizStandings&) under the quiz's exclusive lock, creating it (loaded, empty) when
  // missing.
  template <typename F>
  auto write(int64_t quiz_id, F&& f) {
    std::shared_ptr<Slot> slot = get_or_create(quiz_id);
    WriterLock lock(slot->mu);
    slot->loaded = true;
    return f(slot->standings);
  }

 private:
  struct Slot {
    SharedMutex mu;
    QuizStandings standings QF_GUARDED_BY(mu);
    bool loaded QF_GUARDED_BY(mu) = false;
    int64_t version QF_GUARDED_BY(mu) = 0;
  };
  std::shared_ptr<Slot> find(int64_t quiz_id) const;
  std::shared_ptr<Slot> get_or_create(int64_t quiz_id);

  mutable SharedMutex mu_;
  std::unordered_map<int64_t, std::shared_ptr<Slot>> slots_ QF_GUARDED_BY(mu_);
};

}  // namespace quizflow::stages
