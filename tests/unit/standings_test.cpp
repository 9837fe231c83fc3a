// Standings (spec §4): order and ranks, the counted answer per (user, question), and independence
// from arrival order and batching (spec §5.3), rebuild equals live (spec §5.4).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "stages/score.h"
#include "unit/test_util.h"

namespace quizflow::stages {
namespace {

constexpr int64_t kQuiz = 1;

AnswerEvent ev(std::string id, int64_t user, int32_t question, int64_t at, bool correct,
               int64_t points, int64_t elapsed, int64_t option = 0) {
  AnswerEvent e;
  e.event_id = std::move(id);
  e.quiz_id = kQuiz;
  e.user_id = user;
  e.question_id = question;
  e.option_id = option;
  e.answered_at_ms = at;
  e.elapsed_ms = elapsed;
  e.correct = correct;
  e.points = points;
  return e;
}

using test::pointers_to;

Proposal run_batch(QuizStandings& s, const std::vector<AnswerEvent>& batch) {
  Proposal p = s.propose(kQuiz, pointers_to(batch));
  s.apply(p);
  return p;
}

struct Row {
  int64_t rank, user, score, correct, time_ms;
  bool operator==(const Row&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Row& r) {
  return os << "#" << r.rank << " user " << r.user << " (" << r.score << ", " << r.correct << ", "
            << r.time_ms << ")";
}

std::vector<Row> rows(const std::vector<StandingEntry>& entries) {
  std::vector<Row> out;
  for (const auto& e : entries)
    out.push_back(Row{e.rank, e.user_id, e.standing.score, e.standing.correct, e.standing.time_ms});
  return out;
}

std::vector<Row> all_rows(const QuizStandings& s) { return rows(s.page(0, 1u << 30)); }

// ---- independent model -----------------------------------------------------------------------

struct Model {
  std::map<std::pair<int64_t, int32_t>, AnswerEvent> counted;
  std::vector<Row> order;
};

// The spec's rules written out plainly: the counted answer per (user, question) is the one with
// the smallest (answered_at, event_id) compared bytewise; totals are sums over counted answers;
// order is score desc, correct desc, time asc, user asc.
Model brute_force(const std::vector<AnswerEvent>& all) {
  Model m;
  for (const auto& e : all) {
    const auto key = std::make_pair(e.user_id, e.question_id);
    auto it = m.counted.find(key);
    if (it == m.counted.end()) {
      m.counted.emplace(key, e);
      continue;
    }
    const AnswerEvent& cur = it->second;
    const bool earlier_time = e.answered_at_ms < cur.answered_at_ms;
    const bool same_time = e.answered_at_ms == cur.answered_at_ms;
    // bytewise: compare as unsigned bytes, shorter prefix first
    const bool smaller_id = std::lexicographical_compare(
        e.event_id.begin(), e.event_id.end(), cur.event_id.begin(), cur.event_id.end(),
        [](char a, char b) {
          return static_cast<unsigned char>(a) < static_cast<unsigned char>(b);
        });
    if (earlier_time || (same_time && smaller_id)) it->second = e;
  }
  std::map<int64_t, Row> per_user;
  for (const auto& [key, e] : m.counted) {
    Row& r = per_user[e.user_id];
    r.user = e.user_id;
    r.score += e.points;
    r.correct += e.correct ? 1 : 0;
    r.time_ms += e.elapsed_ms;
  }
  for (const auto& [u, r] : per_user) m.order.push_back(r);
  std::sort(m.order.begin(), m.order.end(), [](const Row& a, const Row& b) {
    return std::make_tuple(-a.score, -a.correct, a.time_ms, a.user) <
           std::make_tuple(-b.score, -b.correct, b.time_ms, b.user);
  });
  for (size_t i = 0; i < m.order.size(); ++i) m.order[i].rank = static_cast<int64_t>(i) + 1;
  return m;
}

// ---- order and ranks ------------------------------------------------------------------------

// Builds a standings table with ties at every level of the order.
QuizStandings tie_table() {
  QuizStandings s;
  const std::vector<AnswerEvent> events = {
      ev("u7q1", 7, 1, 10, true, 200, 900),        ev("u1q1", 1, 1, 10, true, 60, 200),
      ev("u1q2", 1, 2, 10, true, 40, 200),         ev("u9q1", 9, 1, 10, true, 70, 100),
      ev("u9q2", 9, 2, 10, true, 30, 300),         ev("u3q1", 3, 1, 10, true, 50, 250),
      ev("u3q2", 3, 2, 10, true, 50, 250),         ev("u5q1", 5, 1, 10, true, 100, 50),
      ev("u5q2", 5, 2, 10, false, 0, 0),           ev("u2q1", 2, 1, 10, false, 0, 100),
      ev("u4q1", 4, 1, 10, false, 0, 60),          ev("u4q2", 4, 2, 10, false, 0, 40),
      ev("uMq1", INT64_MAX, 1, 10, false, 0, 100),
  };
  run_batch(s, events);
  return s;
}

TEST(Standings, OrderWithTiesAtEveryLevel) {
  const QuizStandings s = tie_table();
  const std::vector<Row> want = {
      {1, 7, 200, 1, 900},        // highest score
      {2, 1, 100, 2, 400},        // score tie: more correct first; time tie: lower user_id
      {3, 9, 100, 2, 400},        //
      {4, 3, 100, 2, 500},        // same score and correct, slower
      {5, 5, 100, 1, 50},         // fewer correct, even though fastest
      {6, 2, 0, 0, 100},          // full tie with 4 and INT64_MAX: user_id asc
      {7, 4, 0, 0, 100},          //
      {8, INT64_MAX, 0, 0, 100},  //
  };
  EXPECT_EQ(s.players(), 8u);
  EXPECT_EQ(all_rows(s), want);
}

TEST(Standings, PageAndFind) {
  const QuizStandings s = tie_table();
  const std::vector<Row> full = all_rows(s);
  ASSERT_EQ(full.size(), 8u);
  EXPECT_EQ(rows(s.page(2, 3)), std::vector<Row>(full.begin() + 2, full.begin() + 5));
  EXPECT_EQ(rows(s.page(0, 1)), std::vector<Row>(full.begin(), full.begin() + 1));
  EXPECT_EQ(rows(s.page(7, 10)), std::vector<Row>(full.begin() + 7, full.end()));
  EXPECT_EQ(rows(s.page(5, 100)), std::vector<Row>(full.begin() + 5, full.end()));
  EXPECT_TRUE(s.page(8, 10).empty());
  EXPECT_TRUE(s.page(1000, 10).empty());
  EXPECT_TRUE(s.page(0, 0).empty());
  EXPECT_TRUE(s.page(3, 0).empty());
  for (const Row& r : full) {
    auto f = s.find(r.user);
    ASSERT_TRUE(f.has_value()) << r.user;
    EXPECT_EQ(f->rank, r.rank) << r.user;
    EXPECT_EQ(f->user_id, r.user);
    EXPECT_EQ(f->standing, (Standing{r.score, r.correct, r.time_ms}));
  }
  EXPECT_FALSE(s.find(6).has_value());
  EXPECT_FALSE(s.find(0).has_value());
  const QuizStandings empty;
  EXPECT_TRUE(empty.page(0, 10).empty());
  EXPECT_FALSE(empty.find(1).has_value());
  EXPECT_EQ(empty.players(), 0u);
}

// Stored rows (a quiz held by another instance) ranked by rank_page / rank_of: the same pages
// and entries as the in-memory standings, whatever order the rows come in.
TEST(Standings, StoredRowsRankAsTheInMemoryStandings) {
  const QuizStandings s = tie_table();
  const std::vector<Row> full = all_rows(s);
  std::vector<StandingRow> stored;
  for (const Row& r : full)
    stored.push_back(StandingRow{kQuiz, r.user, r.score, r.correct, r.time_ms, true});
  std::mt19937 rng(5);
  for (int round = 0; round < 20; ++round) {
    std::shuffle(stored.begin(), stored.end(), rng);
    for (const auto& [offset, limit] : std::vector<std::pair<size_t, size_t>>{
             {0, 100}, {0, 1}, {2, 3}, {7, 10}, {5, 100}, {8, 10}, {1000, 10}, {3, 0}})
      EXPECT_EQ(rows(rank_page(stored, offset, limit)), rows(s.page(offset, limit)))
          << "offset " << offset << " limit " << limit;
    for (const Row& r : full) {
      const auto got = rank_of(stored, r.user), want = s.find(r.user);
      ASSERT_TRUE(got.has_value()) << r.user;
      EXPECT_EQ(got->rank, want->rank) << r.user;
      EXPECT_EQ(got->standing, want->standing) << r.user;
    }
    EXPECT_FALSE(rank_of(stored, 6).has_value());
  }
  EXPECT_TRUE(rank_page({}, 0, 10).empty());
  EXPECT_FALSE(rank_of({}, 1).has_value());
}

TEST(Standings, RankKeyOrder) {
  auto less = [](RankKey a, RankKey b) { return a < b; };
  // score desc
  EXPECT_TRUE(less({10, 0, 999, 9}, {9, 5, 0, 1}));
  EXPECT_FALSE(less({9, 5, 0, 1}, {10, 0, 999, 9}));
  // correct desc
  EXPECT_TRUE(less({10, 3, 999, 9}, {10, 2, 0, 1}));
  EXPECT_FALSE(less({10, 2, 0, 1}, {10, 3, 999, 9}));
  // time asc
  EXPECT_TRUE(less({10, 3, 100, 9}, {10, 3, 101, 1}));
  EXPECT_FALSE(less({10, 3, 101, 1}, {10, 3, 100, 9}));
  // user asc
  EXPECT_TRUE(less({10, 3, 100, 1}, {10, 3, 100, 2}));
  EXPECT_FALSE(less({10, 3, 100, 2}, {10, 3, 100, 1}));
  // irreflexive
  EXPECT_FALSE(less({10, 3, 100, 1}, {10, 3, 100, 1}));
  // extremes do not overflow
  EXPECT_TRUE(less({INT64_MAX, 0, 0, 1}, {INT64_MIN, 0, 0, 1}));
  EXPECT_TRUE(less({0, 0, INT64_MIN, 1}, {0, 0, INT64_MAX, 1}));
}

// ---- the counted answer ---------------------------------------------------------------------

TEST(Standings, EarliestAnswerInABatchCounts) {
  QuizStandings s;
  const std::vector<AnswerEvent> batch = {
      ev("late", 1, 1, 2000, true, 900, 100),
      ev("early", 1, 1, 1000, false, 0, 700),
      ev("later", 1, 1, 3000, true, 800, 200),
  };
  const Proposal p = run_batch(s, batch);
  ASSERT_EQ(p.counted.size(), 1u);
  EXPECT_EQ(p.counted[0].event_id, "early");
  EXPECT_EQ(p.newly_counted, std::vector<size_t>{1});
  EXPECT_EQ(s.find(1)->standing, (Standing{0, 0, 700}));
}

TEST(Standings, TieOnAnsweredAtIsBrokenByEventIdBytewise) {
  // (winner, loser): bytewise order, not locale or numeric order.
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"Z1", "a0"},  // 'Z' 0x5A < 'a' 0x61
      {"10", "9"},   // not numeric
      {"a", "a-"},   // prefix first
      {"x_", "xa"},  // '_' 0x5F < 'a'
      {"x:", "xA"},  // ':' 0x3A < 'A'
      {"x-", "x."},  // '-' 0x2D < '.' 0x2E
      {"x.", "x0"},  // '.' < '0'
  };
  for (const auto& [win, lose] : pairs) {
    SCOPED_TRACE(win + " vs " + lose);
    const AnswerEvent w = ev(win, 1, 1, 5000, true, 750, 123);
    const AnswerEvent l = ev(lose, 1, 1, 5000, false, 0, 456);
    const Standing want{750, 1, 123};
    for (int mode = 0; mode < 4; ++mode) {
      QuizStandings s;
      switch (mode) {
        case 0:
          run_batch(s, {w, l});
          break;
        case 1:
          run_batch(s, {l, w});
          break;
        case 2:
          run_batch(s, {w});
          run_batch(s, {l});
          break;
        default:
          run_batch(s, {l});
          run_batch(s, {w});
          break;
      }
      ASSERT_TRUE(s.find(1).has_value()) << mode;
      EXPECT_EQ(s.find(1)->standing, want) << "mode " << mode;
    }
  }
}

TEST(Standings, LaterBatchWithAnEarlierAnswerSupersedesExactly) {
  QuizStandings s;
  run_batch(s, {ev("b", 1, 1, 1000, true, 800, 4000), ev("c", 1, 2, 1100, true, 600, 3000),
                ev("d", 2, 1, 1000, true, 700, 1000)});
  EXPECT_EQ(s.find(1)->standing, (Standing{1400, 2, 7000}));
  EXPECT_EQ(s.find(1)->rank, 1);

  // An earlier wrong answer to q1 replaces the counted correct one.
  const Proposal p2 = run_batch(s, {ev("z", 1, 1, 900, false, 0, 100)});
  ASSERT_EQ(p2.counted.size(), 1u);
  EXPECT_EQ(p2.counted[0].event_id, "z");
  EXPECT_EQ(p2.counted[0].user_id, 1);
  EXPECT_EQ(p2.counted[0].question_id, 1);
  EXPECT_FALSE(p2.counted[0].correct);
  ASSERT_EQ(p2.standings.size(), 1u);
  EXPECT_EQ(p2.standings[0].user_id, 1);
  EXPECT_EQ(p2.standings[0].score, 600);
  EXPECT_EQ(p2.standings[0].correct, 1);
  EXPECT_EQ(p2.standings[0].time_ms, 3100);
  EXPECT_EQ(s.find(1)->standing, (Standing{600, 1, 3100}));
  EXPECT_EQ(s.find(1)->rank, 2);  // user 2 (700) now leads
  EXPECT_EQ(s.find(2)->rank, 1);

  // A later answer than the counted one is superseded: nothing changes.
  const Proposal p3 = run_batch(s, {ev("a", 1, 1, 950, true, 1000, 50)});
  EXPECT_TRUE(p3.counted.empty());
  EXPECT_TRUE(p3.standings.empty());
  EXPECT_TRUE(p3.newly_counted.empty());
  EXPECT_EQ(s.find(1)->standing, (Standing{600, 1, 3100}));

  // Same answered_at as the counted one, smaller event_id: supersedes it.
  const Proposal p4 = run_batch(s, {ev("y", 1, 1, 900, true, 900, 200)});
  ASSERT_EQ(p4.counted.size(), 1u);
  EXPECT_EQ(p4.counted[0].event_id, "y");
  EXPECT_EQ(s.find(1)->standing, (Standing{1500, 2, 3200}));
  EXPECT_EQ(s.find(1)->rank, 1);
  EXPECT_EQ(s.find(2)->standing, (Standing{700, 1, 1000}));
}

TEST(Standings, ProposalListsNewlyCountedEventsAndAbsoluteStandings) {
  QuizStandings s;
  run_batch(s, {ev("a1", 1, 1, 100, true, 10, 1)});
  const std::vector<AnswerEvent> batch = {
      ev("a2", 1, 2, 100, true, 20, 2),  // new key
      ev("a0", 1, 1, 200, true, 99, 9),  // superseded by stored a1
      ev("b1", 2, 1, 300, true, 30, 3),  // new user
      ev("b0", 2, 1, 250, false, 0, 4),  // beats b1 inside the batch
  };
  const Proposal p = s.propose(kQuiz, pointers_to(batch));
  EXPECT_EQ(p.quiz_id, kQuiz);
  std::vector<size_t> idx = p.newly_counted;
  std::sort(idx.begin(), idx.end());
  EXPECT_EQ(idx, (std::vector<size_t>{0, 3}));
  std::set<std::string> ids;
  for (const auto& c : p.counted) ids.insert(c.event_id);
  EXPECT_EQ(ids, (std::set<std::string>{"a2", "b0"}));
  for (const auto& c : p.counted) EXPECT_EQ(c.quiz_id, kQuiz);
  std::map<int64_t, std::tuple<int64_t, int64_t, int64_t>> st;
  for (const auto& r : p.standings) {
    EXPECT_EQ(r.quiz_id, kQuiz);
    st[r.user_id] = {r.score, r.correct, r.time_ms};
  }
  const std::map<int64_t, std::tuple<int64_t, int64_t, int64_t>> want = {{1, {30, 2, 3}},
                                                                         {2, {0, 0, 4}}};
  EXPECT_EQ(st, want);
}

TEST(Standings, ProposeIsPure) {
  QuizStandings s = tie_table();
  const std::vector<Row> before = all_rows(s);
  const std::vector<AnswerEvent> batch = {ev("aaa", 5, 2, 1, true, 5000, 1),
                                          ev("new", 42, 1, 10, true, 1, 1)};
  const Proposal p1 = s.propose(kQuiz, pointers_to(batch));
  const Proposal p2 = s.propose(kQuiz, pointers_to(batch));
  EXPECT_EQ(all_rows(s), before);
  EXPECT_EQ(s.players(), before.size());
  EXPECT_FALSE(s.find(42).has_value());
  ASSERT_EQ(p1.counted.size(), p2.counted.size());
  ASSERT_EQ(p1.standings.size(), p2.standings.size());
  for (size_t i = 0; i < p1.standings.size(); ++i) {
    EXPECT_EQ(p1.standings[i].user_id, p2.standings[i].user_id);
    EXPECT_EQ(p1.standings[i].score, p2.standings[i].score);
  }
  s.apply(p1);
  EXPECT_EQ(s.find(5)->standing, (Standing{5100, 2, 51}));
  EXPECT_EQ(s.find(5)->rank, 1);
  EXPECT_TRUE(s.find(42).has_value());
}

TEST(Standings, ReprocessingTheSameEventsChangesNothing) {
  QuizStandings s = tie_table();
  const std::vector<Row> before = all_rows(s);
  const std::vector<AnswerEvent> again = {ev("u7q1", 7, 1, 10, true, 200, 900),
                                          ev("u1q1", 1, 1, 10, true, 60, 200)};
  const Proposal p = run_batch(s, again);
  EXPECT_TRUE(p.counted.empty());
  EXPECT_TRUE(p.standings.empty());
  EXPECT_EQ(all_rows(s), before);
}

// ---- order independence, batching independence, rebuild --------------------------------------

std::vector<AnswerEvent> random_events(std::mt19937_64& rng, size_t n, int64_t users,
                                       int32_t questions, int64_t time_span) {
  static const std::string alphabet = "aZz09._:-A";
  std::set<std::string> used;
  std::vector<AnswerEvent> out;
  while (out.size() < n) {
    std::string id;
    const size_t len = 1 + rng() % 4;
    for (size_t i = 0; i < len; ++i) id += alphabet[rng() % alphabet.size()];
    if (!used.insert(id).second) continue;
    const bool correct = rng() % 2 == 0;
    out.push_back(ev(id, 1 + static_cast<int64_t>(rng() % users),
                     1 + static_cast<int32_t>(rng() % questions),
                     static_cast<int64_t>(rng() % time_span), correct,
                     correct ? 500 + static_cast<int64_t>(rng() % 501) : 0,
                     static_cast<int64_t>(rng() % 20001), static_cast<int64_t>(rng() % 4)));
  }
  return out;
}

TEST(Standings, ResultIsIndependentOfArrivalOrderAndBatching) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    const size_t n = 50 + rng() % 300;
    std::vector<AnswerEvent> events =
        random_events(rng, n, 2 + static_cast<int64_t>(rng() % 20),
                      1 + static_cast<int32_t>(rng() % 5), 1 + static_cast<int64_t>(rng() % 30));
    const Model want = brute_force(events);

    for (int trial = 0; trial < 3; ++trial) {
      std::shuffle(events.begin(), events.end(), rng);
      QuizStandings s;
      // counted table as a database would hold it: upserted rows, last write per key wins
      std::map<std::pair<int64_t, int32_t>, CountedRow> table;
      size_t i = 0;
      while (i < events.size()) {
        const size_t size = std::min(events.size() - i, 1 + static_cast<size_t>(rng() % 40));
        std::vector<AnswerEvent> batch(events.begin() + static_cast<std::ptrdiff_t>(i),
                                       events.begin() + static_cast<std::ptrdiff_t>(i + size));
        const Proposal p = run_batch(s, batch);
        for (const auto& c : p.counted) table[{c.user_id, c.question_id}] = c;
        i += size;
      }
      ASSERT_EQ(all_rows(s), want.order) << "trial " << trial;
      EXPECT_EQ(s.players(), want.order.size());
      for (const Row& r : want.order) {
        auto f = s.find(r.user);
        ASSERT_TRUE(f.has_value());
        EXPECT_EQ(f->rank, r.rank);
      }
      // The counted answers written along the way are exactly the model's.
      ASSERT_EQ(table.size(), want.counted.size());
      for (const auto& [key, e] : want.counted) {
        ASSERT_TRUE(table.count(key));
        const CountedRow& c = table.at(key);
        EXPECT_EQ(c.event_id, e.event_id);
        EXPECT_EQ(c.answered_at_ms, e.answered_at_ms);
        EXPECT_EQ(c.points, e.points);
        EXPECT_EQ(c.correct, e.correct);
        EXPECT_EQ(c.elapsed_ms, e.elapsed_ms);
        EXPECT_EQ(c.option_id, e.option_id);
      }
      // Rebuild from the counted table (in a shuffled order) equals live.
      std::vector<CountedRow> rows_in(table.size());
      std::transform(table.begin(), table.end(), rows_in.begin(),
                     [](const auto& kv) { return kv.second; });
      std::shuffle(rows_in.begin(), rows_in.end(), rng);
      QuizStandings rebuilt;
      for (const auto& r : rows_in) rebuilt.load(r);
      EXPECT_EQ(all_rows(rebuilt), all_rows(s));
      EXPECT_EQ(rebuilt.players(), s.players());

      // Replaying every event again (idempotence) changes nothing.
      const Proposal again = s.propose(kQuiz, pointers_to(events));
      EXPECT_TRUE(again.counted.empty());
      EXPECT_TRUE(again.standings.empty());
    }
  }
}

TEST(Standings, RebuiltStandingsContinueLikeLiveOnes) {
  // After load(), a new batch must supersede loaded answers exactly as it would live ones.
  QuizStandings live;
  run_batch(live, {ev("m", 1, 1, 500, true, 900, 100), ev("n", 2, 1, 500, true, 800, 100)});
  QuizStandings rebuilt;
  rebuilt.load(CountedRow{kQuiz, 1, 1, "m", 500, 0, true, 900, 100});
  rebuilt.load(CountedRow{kQuiz, 2, 1, "n", 500, 0, true, 800, 100});
  EXPECT_EQ(all_rows(rebuilt), all_rows(live));
  const std::vector<AnswerEvent> next = {ev("a", 1, 1, 400, false, 0, 50),
                                         ev("z", 2, 1, 600, false, 0, 50)};
  run_batch(live, next);
  run_batch(rebuilt, next);
  EXPECT_EQ(all_rows(rebuilt), all_rows(live));
  EXPECT_EQ(rebuilt.find(1)->standing, (Standing{0, 0, 50}));
  EXPECT_EQ(rebuilt.find(2)->standing, (Standing{800, 1, 100}));
}

// ---- StandingsBook ----------------------------------------------------------------------------

TEST(StandingsBook, ReadMissingQuizSeesNullptr) {
  StandingsBook book;
  const bool was_null = book.read(5, [](const QuizStandings* s) { return s == nullptr; });
  EXPECT_TRUE(was_null);
}

TEST(StandingsBook, QuizzesAreIndependent) {
  StandingsBook book;
  const AnswerEvent a = ev("a", 1, 1, 1, true, 10, 1);
  const AnswerEvent b = ev("b", 2, 1, 1, true, 20, 1);
  book.write(1, [&](QuizStandings& s) { s.apply(s.propose(1, {&a})); });
  book.write(2, [&](QuizStandings& s) { s.apply(s.propose(2, {&b})); });
  // The rows each quiz holds, or nullopt when the book has no standings for it.
  auto snapshot = [&](int64_t quiz) {
    return book.read(quiz, [](const QuizStandings* s) -> std::optional<std::vector<Row>> {
      if (!s) return std::nullopt;
      return all_rows(*s);
    });
  };
  EXPECT_EQ(snapshot(1), (std::vector<Row>{{1, 1, 10, 1, 1}}));
  EXPECT_EQ(snapshot(2), (std::vector<Row>{{1, 2, 20, 1, 1}}));
  EXPECT_FALSE(snapshot(3).has_value());
}

TEST(StandingsBook, ConcurrentWritersAndReaders) {
  StandingsBook book;
  constexpr int kThreads = 4, kPerThread = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&book, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int64_t quiz = 1 + (i % 3);
        std::string id = "t";
        id += std::to_string(t);
        id += '-';
        id += std::to_string(i);
        const AnswerEvent e = ev(id, 1 + t * kPerThread + i, 1, i, true, 1, 1);
        book.write(quiz, [&](QuizStandings& s) { s.apply(s.propose(quiz, {&e})); });
        book.read(quiz, [](const QuizStandings* s) { return s ? s->page(0, 10).size() : 0u; });
      }
    });
  }
  for (auto& th : threads) th.join();
  size_t total = 0;
  for (int64_t quiz = 1; quiz <= 3; ++quiz)
    total += book.read(quiz, [](const QuizStandings* s) { return s ? s->players() : size_t{0}; });
  EXPECT_EQ(total, static_cast<size_t>(kThreads * kPerThread));
}

}  // namespace
}  // namespace quizflow::stages
