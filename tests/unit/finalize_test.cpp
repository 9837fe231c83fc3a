// Finalization rules (spec §4): final ranks, the tiers' rewards, quiz_results / reward_granted
// notifications; the finalization schedule of the batch node; rank_changed moves and their
// coalescing.
#include "stages/finalize.h"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <map>
#include <random>

#include "stages/notify.h"
#include "stages/score.h"

namespace quizflow::stages {
namespace {

QuizDef quiz_with_tiers() {
  QuizDef q;
  q.quiz_id = 9;
  q.rewards = {RewardTier{1, 3, "gold"}, RewardTier{4, 10, "silver"}, RewardTier{20, 25, "late"}};
  return q;
}

std::string field(const Notification& n, const char* key) {
  rapidjson::Document d;
  d.Parse(n.value.c_str());
  const auto& v = d[key];
  return v.IsString() ? v.GetString() : std::to_string(v.GetInt64());
}

TEST(FinalResults, RanksInStandingsOrderAndGrantsTheTierOfEachRank) {
  const QuizDef q = quiz_with_tiers();
  std::vector<StandingRow> rows;
  std::mt19937 rng(7);
  for (int64_t u = 1; u <= 30; ++u)
    rows.push_back(StandingRow{9, u, static_cast<int64_t>(rng() % 5) * 100,
                               static_cast<int64_t>(rng() % 3), static_cast<int64_t>(rng() % 4),
                               true});
  std::shuffle(rows.begin(), rows.end(), rng);
  const FinalRows f = final_results(q, rows);
  ASSERT_EQ(f.standings.size(), 30u);
  for (size_t i = 0; i < f.standings.size(); ++i) {
    EXPECT_EQ(f.standings[i].rank, static_cast<int64_t>(i + 1));
    if (i == 0) continue;
    const auto& a = f.standings[i - 1];
    const auto& b = f.standings[i];
    const RankKey ka{a.standing.score, a.standing.correct, a.standing.time_ms, a.user_id};
    const RankKey kb{b.standing.score, b.standing.correct, b.standing.time_ms, b.user_id};
    EXPECT_TRUE(ka < kb) << "rank " << i;
  }
  // Ranks 1-3 gold, 4-10 silver, 20-25 late; the rest nothing.
  ASSERT_EQ(f.rewards.size(), 16u);
  std::map<int64_t, std::string> by_rank;
  for (const RewardRow& r : f.rewards) {
    by_rank[r.rank] = r.reward;
    EXPECT_EQ(r.user_id, f.standings[static_cast<size_t>(r.rank - 1)].user_id);
  }
  for (int64_t r = 1; r <= 30; ++r) {
    const char* want = r <= 3 ? "gold" : r <= 10 ? "silver" : (r >= 20 && r <= 25) ? "late" : "";
    EXPECT_EQ(by_rank.count(r) ? by_rank[r] : "", want) << "rank " << r;
  }
  // One quiz_results per player, one reward_granted per reward; ids say quiz, type and user.
  ASSERT_EQ(f.notifications.size(), 30u + 16u);
  for (size_t i = 0; i < 30; ++i) {
    const Notification& n = f.notifications[i];
    EXPECT_EQ(field(n, "type"), "quiz_results");
    EXPECT_EQ(n.key, std::to_string(f.standings[i].user_id));
    EXPECT_EQ(field(n, "notification_id"), "quiz_results:9:" + n.key);
    EXPECT_EQ(field(n, "rank"), std::to_string(i + 1));
    EXPECT_EQ(field(n, "score"), std::to_string(f.standings[i].standing.score));
  }
  for (size_t i = 30; i < f.notifications.size(); ++i) {
    const Notification& n = f.notifications[i];
    EXPECT_EQ(field(n, "type"), "reward_granted");
    EXPECT_EQ(field(n, "notification_id"), "reward_granted:9:" + n.key);
    EXPECT_EQ(field(n, "reward"), by_rank[std::stoll(field(n, "rank"))]);
  }
  // Deterministic: the same input gives the same bytes.
  EXPECT_EQ(final_results(q, rows).notifications[5].value, f.notifications[5].value);
}

TEST(FinalResults, NoPlayersNoRewards) {
  const FinalRows f = final_results(quiz_with_tiers(), {});
  EXPECT_TRUE(f.standings.empty());
  EXPECT_TRUE(f.rewards.empty());
  EXPECT_TRUE(f.notifications.empty());
}

TEST(TierFor, EdgesOfEachTier) {
  const QuizDef q = quiz_with_tiers();
  for (int64_t r : {1, 3}) EXPECT_EQ(tier_for(q, r)->reward, "gold");
  for (int64_t r : {4, 10}) EXPECT_EQ(tier_for(q, r)->reward, "silver");
  for (int64_t r : {20, 25}) EXPECT_EQ(tier_for(q, r)->reward, "late");
  for (int64_t r : {0, 11, 19, 26, 1000}) EXPECT_EQ(tier_for(q, r), nullptr) << r;
  EXPECT_EQ(tier_for(QuizDef{}, 1), nullptr);
}

TEST(FinalizeSchedule, DueQuizzesInOrderEarliestWins) {
  FinalizeSchedule s;
  EXPECT_EQ(s.next_due_ms(0), INT64_MAX);
  s.schedule(1, 500);
  s.schedule(2, 300);
  s.schedule(1, 900);  // later: ignored
  s.schedule(3, 700);
  s.schedule(3, 100);  // earlier (a close request): wins
  EXPECT_EQ(s.next_due_ms(0), 100);
  EXPECT_EQ(s.take_due(99), std::vector<int64_t>{});
  EXPECT_EQ(s.take_due(300), (std::vector<int64_t>{3, 2}));
  EXPECT_TRUE(s.finalizing(3));
  EXPECT_TRUE(s.finalizing(2));
  EXPECT_FALSE(s.finalizing(1));
  EXPECT_EQ(s.ready(300), (std::vector<int64_t>{2, 3}));
  s.schedule(3, 0);  // while finalizing: ignored
  EXPECT_EQ(s.next_due_ms(300), 500);
  s.started(3);
  EXPECT_EQ(s.ready(300), std::vector<int64_t>{2});
  EXPECT_EQ(s.finished(3, true, 400), 0);
  EXPECT_FALSE(s.finalizing(3));
  EXPECT_EQ(s.take_due(1000), std::vector<int64_t>{1});
  EXPECT_EQ(s.scheduled(), 0u);
}

TEST(FinalizeSchedule, AFailedQuizStaysFinalizingAndIsRetriedWithGrowingDelays) {
  FinalizeSchedule s;
  s.schedule(7, 0);
  ASSERT_EQ(s.take_due(0), std::vector<int64_t>{7});
  int64_t now = 0;
  const std::vector<int64_t> want = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
  for (int64_t delay : want) {
    s.started(7);
    EXPECT_TRUE(s.ready(now).empty()) << "an attempt is running";
    EXPECT_EQ(s.next_due_ms(now), INT64_MAX);
    EXPECT_EQ(s.finished(7, false, now), delay);
    EXPECT_TRUE(s.finalizing(7)) << "its answers must stay refused";
    EXPECT_TRUE(s.ready(now + delay - 1).empty());
    EXPECT_EQ(s.next_due_ms(now), now + delay);
    now += delay;
    EXPECT_EQ(s.ready(now), std::vector<int64_t>{7});
  }
  s.started(7);
  s.finished(7, true, now);
  EXPECT_FALSE(s.finalizing(7));
  EXPECT_EQ(s.next_due_ms(now), INT64_MAX);
}

// ---- rank_changed ----

AnswerEvent ev(const std::string& id, int64_t user, int32_t question, int64_t points) {
  AnswerEvent e;
  e.event_id = id;
  e.quiz_id = 1;
  e.user_id = user;
  e.question_id = question;
  e.answered_at_ms = 1000;
  e.correct = points > 0;
  e.points = points;
  e.elapsed_ms = 10;
  return e;
}

// Proposes `events`, computes the moves, applies; returns the moves.
std::vector<RankMove> step(QuizStandings& s, const std::vector<AnswerEvent>& events,
                           RankPolicy policy) {
  std::vector<const AnswerEvent*> p;
  for (const auto& e : events) p.push_back(&e);
  Proposal prop = s.propose(1, p);
  prop.moves = s.rank_moves(prop, policy);
  prop.policy = policy;
  s.apply(prop);
  return prop.moves;
}

TEST(RankMoves, EnteringAndMovingWithinTheTopNAreTold) {
  QuizStandings s;
  const RankPolicy p{3, 0, 0};
  // Four players: the top 3 enter (previous rank 0), the 4th is outside.
  EXPECT_EQ(
      step(s, {ev("a", 1, 1, 400), ev("b", 2, 1, 300), ev("c", 3, 1, 200), ev("d", 4, 1, 100)}, p),
      (std::vector<RankMove>{{1, 1, 0}, {2, 2, 0}, {3, 3, 0}}));
  // Player 4 jumps to first: 4 enters at 1 from 4; 1, 2 move down to 2, 3; 3 leaves (not told).
  EXPECT_EQ(step(s, {ev("e", 4, 2, 1000)}, p),
            (std::vector<RankMove>{{4, 1, 4}, {1, 2, 1}, {2, 3, 2}}));
  // Nothing moves: nothing told.
  EXPECT_TRUE(step(s, {ev("f", 2, 2, 0)}, p).empty());
  // Player 3 comes back into the top 3: told again (it left, so it was forgotten).
  EXPECT_EQ(step(s, {ev("g", 3, 2, 2000)}, p),
            (std::vector<RankMove>{{3, 1, 4}, {4, 2, 1}, {1, 3, 2}}));
}

TEST(RankMoves, CoalescedPerPlayerPerWindowAgainstTheRankLastTold) {
  QuizStandings s;
  RankPolicy p{2, 1000, 0};
  EXPECT_EQ(step(s, {ev("a", 1, 1, 100), ev("b", 2, 1, 50)}, p),
            (std::vector<RankMove>{{1, 1, 0}, {2, 2, 0}}));
  p.now_ms = 400;  // within the window: 2 passes 1, nobody is told
  EXPECT_TRUE(step(s, {ev("c", 2, 2, 100)}, p).empty());
  p.now_ms = 1200;  // after it: told against the rank last told, with any batch of the quiz
  EXPECT_EQ(step(s, {ev("d", 3, 1, 1)}, p), (std::vector<RankMove>{{2, 1, 2}, {1, 2, 1}}));
  p.now_ms = 1300;
  EXPECT_TRUE(step(s, {ev("e", 3, 2, 1)}, p).empty());
}

TEST(RankMoves, TopZeroTellsNothing) {
  QuizStandings s;
  EXPECT_TRUE(step(s, {ev("a", 1, 1, 100)}, RankPolicy{0, 0, 0}).empty());
}

TEST(RankChanged, CarriesRanksAndAnIdOfItsCause) {
  const Notification n = rank_changed(7, RankMove{42, 2, 5}, "abc-12");
  EXPECT_EQ(n.key, "42");
  EXPECT_EQ(field(n, "notification_id"), "rank_changed:7:42:abc-12");
  EXPECT_EQ(field(n, "type"), "rank_changed");
  EXPECT_EQ(field(n, "rank"), "2");
  EXPECT_EQ(field(n, "previous_rank"), "5");
  EXPECT_EQ(field(n, "quiz_id"), "7");
}

}  // namespace
}  // namespace quizflow::stages
