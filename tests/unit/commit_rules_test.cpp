// The rules applied around a batch transaction, without a database: dedupe (repeats inside one
// transaction), derive / rows_of / apply (spec §4 counted answers and standings, against a
// brute-force model over random transactions), the per-item verdict, the answer_result
// notifications, and when the batch stage wants to be woken (BatchBuffers::next_due_ms).
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <climits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "stages/batch.h"
#include "stages/dedupe.h"
#include "stages/derive.h"
#include "stages/notify.h"
#include "stages/score.h"
#include "stages/verdict.h"
#include "unit/test_util.h"

namespace quizflow::stages {
namespace {

AnswerEvent ev(std::string id, int64_t quiz = 1, int64_t user = 1, int32_t question = 1,
               int64_t at = 0) {
  AnswerEvent e;
  e.event_id = std::move(id);
  e.quiz_id = quiz;
  e.user_id = user;
  e.question_id = question;
  e.answered_at_ms = at;
  return e;
}

using test::pointers_to;

// ---- dedupe ----

TEST(Dedupe, RepeatsMapToMinusOneAndTheFirstOccurrenceIsKeptInOrder) {
  // Same ids, different contents: the first occurrence must be the one kept.
  const std::vector<AnswerEvent> in{ev("b", 1, 1), ev("a", 1, 2), ev("b", 1, 3),
                                    ev("c", 1, 4), ev("a", 1, 5), ev("b", 1, 6)};
  const auto p = pointers_to(in);
  const DistinctEvents d = dedupe(p);
  ASSERT_EQ(d.events.size(), 3u);
  EXPECT_EQ(d.events[0], &in[0]);
  EXPECT_EQ(d.events[1], &in[1]);
  EXPECT_EQ(d.events[2], &in[3]);
  EXPECT_EQ(d.slot_of, (std::vector<int32_t>{0, 1, -1, 2, -1, -1}));
}

// Spec §3: an event_id is unique within its quiz; the same id in another quiz is another answer.
TEST(Dedupe, TheSameEventIdInTwoQuizzesIsTwoEvents) {
  const std::vector<AnswerEvent> in{ev("e1", 1), ev("e1", 2), ev("e1", 1), ev("e1", 2)};
  const auto p = pointers_to(in);
  const DistinctEvents d = dedupe(p);
  ASSERT_EQ(d.events.size(), 2u);
  EXPECT_EQ(d.events[0], &in[0]);
  EXPECT_EQ(d.events[1], &in[1]);
  EXPECT_EQ(d.slot_of, (std::vector<int32_t>{0, 1, -1, -1}));
}

TEST(Dedupe, EmptyAndAllDistinct) {
  const DistinctEvents none = dedupe({});
  EXPECT_TRUE(none.events.empty());
  EXPECT_TRUE(none.slot_of.empty());
  const std::vector<AnswerEvent> in{ev("x"), ev("y"), ev("z")};
  const auto p = pointers_to(in);
  const DistinctEvents d = dedupe(p);
  EXPECT_EQ(d.events, p);
  EXPECT_EQ(d.slot_of, (std::vector<int32_t>{0, 1, 2}));
}

TEST(Dedupe, RandomInputsAgreeWithAFirstSeenScan) {
  std::mt19937 rng(17);
  for (int round = 0; round < 200; ++round) {
    std::vector<AnswerEvent> in;
    const int n = std::uniform_int_distribution<int>(0, 40)(rng);
    for (int i = 0; i < n; ++i)
      in.push_back(ev("id" + std::to_string(std::uniform_int_distribution<int>(0, 15)(rng)),
                      std::uniform_int_distribution<int>(1, 3)(rng), i));
    const auto p = pointers_to(in);
    const DistinctEvents d = dedupe(p);
    std::map<std::pair<int64_t, std::string>, int32_t> seen;  // (quiz_id, event_id)
    std::vector<const AnswerEvent*> want_events;
    std::vector<int32_t> want_slots;
    for (const AnswerEvent* e : p) {
      auto [it, fresh] = seen.emplace(std::pair{e->quiz_id, e->event_id},
                                      static_cast<int32_t>(want_events.size()));
      if (fresh) want_events.push_back(e);
      want_slots.push_back(fresh ? it->second : -1);
    }
    ASSERT_EQ(d.events, want_events) << "round " << round;
    ASSERT_EQ(d.slot_of, want_slots) << "round " << round;
  }
}

// ---- derive, rows_of, apply: against a brute-force model ----

using Key = std::tuple<int64_t, int64_t, int32_t>;  // (quiz, user, question)
using Player = std::pair<int64_t, int64_t>;         // (quiz, user)

// The event log and what spec §4 says follows from it, recomputed from scratch every time.
struct Model {
  std::map<std::string, AnswerEvent> log;  // event_id -> the content first stored

  std::map<Key, const AnswerEvent*> counted() const {
    std::map<Key, const AnswerEvent*> out;
    for (const auto& [id, e] : log) {
      const Key k{e.quiz_id, e.user_id, e.question_id};
      auto it = out.find(k);
      if (it == out.end() || std::make_pair(e.answered_at_ms, e.event_id) <
                                 std::make_pair(it->second->answered_at_ms, it->second->event_id))
        out[k] = &e;
    }
    return out;
  }

  static std::map<Player, Standing> standings(const std::map<Key, const AnswerEvent*>& counted) {
    std::map<Player, Standing> out;
    for (const auto& [k, e] : counted) {
      Standing& s = out[{e->quiz_id, e->user_id}];
      s.score += e->points;
      s.correct += e->correct ? 1 : 0;
      s.time_ms += e->elapsed_ms;
    }
    return out;
  }
};

using CountedTuple = std::tuple<int64_t, int64_t, int32_t, std::string, int64_t, int32_t, bool,
                                int64_t, int64_t, bool>;
using StandingTuple = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, bool>;

CountedTuple tuple_of(const CountedRow& r) {
  return {r.quiz_id,   r.user_id, r.question_id, r.event_id,   r.answered_at_ms,
          r.option_id, r.correct, r.points,      r.elapsed_ms, r.replaces};
}

StandingTuple tuple_of(const StandingRow& r) {
  return {r.quiz_id, r.user_id, r.score, r.correct, r.time_ms, r.exists};
}

TEST(Derive, RandomTransactionsGiveTheBruteForceCountedAnswersAndStandings) {
  std::mt19937_64 rng(20261127);
  auto uni = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  for (int run = 0; run < 20; ++run) {
    const int quizzes = static_cast<int>(uni(2, 3));
    Model model;
    StandingsBook book;
    for (int q = 1; q <= quizzes; ++q) book.add_empty(100 + q);
    int next_id = 0;
    for (int txn = 0; txn < 30; ++txn) {
      // A transaction's events: new ones, repeats of its own ids (other content), and resends of
      // stored ids with other content (not new: must not count).
      std::vector<AnswerEvent> events;
      const int n = static_cast<int>(uni(1, 25));
      for (int i = 0; i < n; ++i) {
        const int64_t kind = uni(0, 9);
        if (kind == 0 && !events.empty()) {
          AnswerEvent e =
              events[static_cast<size_t>(uni(0, static_cast<int64_t>(events.size()) - 1))];
          e.answered_at_ms -= 1000000;  // would win if it counted
          e.points += 5;
          events.push_back(e);
          continue;
        }
        if (kind == 1 && !model.log.empty()) {
          auto it = model.log.begin();
          std::advance(it, uni(0, static_cast<int64_t>(model.log.size()) - 1));
          AnswerEvent e = it->second;
          e.answered_at_ms -= 1000000;
          e.user_id = uni(1, 6);
          events.push_back(e);
          continue;
        }
        AnswerEvent e;
        // Ids sort against answered_at ties in both directions.
        e.event_id = uni(0, 1) ? "b" : "a";
        e.event_id += std::to_string(next_id++);
        e.quiz_id = 100 + uni(1, quizzes);
        e.user_id = uni(1, 6);
        e.question_id = static_cast<int32_t>(uni(1, 4));
        e.option_id = uni(0, 3);
        e.answered_at_ms = 1000 * uni(0, 20);
        e.correct = uni(0, 1) == 1;
        e.points = e.correct ? uni(1, 1000) : 0;
        e.elapsed_ms = uni(0, 20000);
        events.push_back(e);
      }
      const auto in = pointers_to(events);
      const DistinctEvents d = dedupe(in);
      std::vector<bool> inserted;
      for (const AnswerEvent* e : d.events) inserted.push_back(!model.log.count(e->event_id));

      const auto counted_before = model.counted();
      const auto standings_before = Model::standings(counted_before);
      const TxnChanges c = derive(d, inserted, book);
      const DerivedRows rows = rows_of(c);
      for (size_t i = 0; i < d.events.size(); ++i)
        if (inserted[i]) model.log.emplace(d.events[i]->event_id, *d.events[i]);
      const auto counted_after = model.counted();
      const auto standings_after = Model::standings(counted_after);

      // Expected rows: every key whose counted answer changed, every player with such a key.
      std::multiset<CountedTuple> want_counted;
      std::multiset<StandingTuple> want_standings;
      std::multiset<std::string> want_counted_ids;
      std::set<Player> touched;
      for (const auto& [k, e] : counted_after) {
        auto old = counted_before.find(k);
        if (old != counted_before.end() && old->second->event_id == e->event_id) continue;
        want_counted.insert({e->quiz_id, e->user_id, e->question_id, e->event_id, e->answered_at_ms,
                             static_cast<int32_t>(e->option_id), e->correct, e->points,
                             e->elapsed_ms, old != counted_before.end()});
        want_counted_ids.insert(e->event_id);
        touched.insert({e->quiz_id, e->user_id});
      }
      for (const Player& p : touched) {
        const Standing& s = standings_after.at(p);
        want_standings.insert(
            {p.first, p.second, s.score, s.correct, s.time_ms, standings_before.count(p) > 0});
      }
      std::multiset<CountedTuple> got_counted;
      for (const auto& r : rows.counted) got_counted.insert(tuple_of(r));
      std::multiset<StandingTuple> got_standings;
      for (const auto& r : rows.standings) got_standings.insert(tuple_of(r));
      ASSERT_EQ(got_counted, want_counted) << "run " << run << " txn " << txn;
      ASSERT_EQ(got_standings, want_standings) << "run " << run << " txn " << txn;

      // c.counted names the distinct events that became counted, and only new ones.
      std::multiset<std::string> got_ids;
      for (size_t k : c.counted) {
        ASSERT_LT(k, d.events.size());
        EXPECT_TRUE(inserted[k]) << "a stored event was counted";
        got_ids.insert(d.events[k]->event_id);
      }
      ASSERT_EQ(got_ids, want_counted_ids) << "run " << run << " txn " << txn;

      // One answer_result per counted event, with its deterministic id.
      const auto notes = batch_notifications(d, c, "k");
      std::multiset<std::string> note_ids;
      for (const auto& m : notes) {
        rapidjson::Document doc;
        ASSERT_FALSE(doc.Parse(m.value.c_str()).HasParseError()) << m.value;
        if (std::string(doc["type"].GetString()) == "answer_result")
          note_ids.insert(doc["notification_id"].GetString());
      }
      std::multiset<std::string> want_note_ids;
      for (size_t k : c.counted) {
        const AnswerEvent& e = *d.events[k];
        want_note_ids.insert("answer_result:" + std::to_string(e.quiz_id) + ":" +
                             std::to_string(e.user_id) + ":" + e.event_id);
      }
      ASSERT_EQ(note_ids, want_note_ids);

      // After apply, memory equals the model for every player of every quiz.
      apply(book, c);
      for (int q = 1; q <= quizzes; ++q) {
        const int64_t quiz = 100 + q;
        size_t players = 0;
        for (const auto& [p, s] : standings_after) {
          if (p.first != quiz) continue;
          ++players;
          const auto got = book.read(quiz, [&](const QuizStandings* st) {
            return st ? st->find(p.second) : std::optional<StandingEntry>{};
          });
          ASSERT_TRUE(got) << "quiz " << quiz << " user " << p.second;
          EXPECT_EQ(got->standing, s) << "quiz " << quiz << " user " << p.second;
        }
        EXPECT_EQ(book.read(quiz, [](const QuizStandings* st) { return st ? st->players() : 0; }),
                  players);
      }
    }
  }
}

TEST(Derive, NothingNewChangesNothing) {
  StandingsBook book;
  const std::vector<AnswerEvent> events{ev("x", 1, 1, 1, 5), ev("y", 2, 1, 1, 5)};
  const auto p = pointers_to(events);
  const DistinctEvents d = dedupe(p);
  const TxnChanges c = derive(d, {false, false}, book);
  EXPECT_TRUE(c.counted.empty());
  const DerivedRows rows = rows_of(c);
  EXPECT_TRUE(rows.counted.empty());
  EXPECT_TRUE(rows.standings.empty());
  EXPECT_TRUE(batch_notifications(d, c, "k").empty());
  apply(book, c);
  EXPECT_EQ(book.read(1, [](const QuizStandings* s) { return s ? s->players() : 0; }), 0u);
}

// ---- verdicts ----

TEST(CommitVerdict, FailedTransactionRejectsEveryEventAsStorageUnavailable) {
  for (int32_t slot : {-1, 0, 1}) {
    const Verdict v = commit_verdict(Status::timeout("pool"), slot, {true, false});
    EXPECT_EQ(v.status, ItemStatus::rejected);
    EXPECT_EQ(v.code, kStorageUnavailable);
    EXPECT_TRUE(v.server_failure());
  }
}

TEST(CommitVerdict, NewEventIsAcceptedAndStoredOrRepeatedOneIsDuplicate) {
  const std::vector<bool> inserted{true, false};
  EXPECT_EQ(commit_verdict(Status(), 0, inserted).status, ItemStatus::accepted);
  EXPECT_TRUE(commit_verdict(Status(), 0, inserted).code.empty());
  EXPECT_EQ(commit_verdict(Status(), 1, inserted).status, ItemStatus::duplicate);   // stored before
  EXPECT_EQ(commit_verdict(Status(), -1, inserted).status, ItemStatus::duplicate);  // repeated
  EXPECT_EQ(commit_verdict(Status(), 2, inserted).status, ItemStatus::duplicate);   // no flag
}

TEST(Without, RefusedEventsAndTheirRepeatsGetTheRefusedSlotOthersAreRenumbered) {
  const std::vector<AnswerEvent> in{ev("a"), ev("b"), ev("a"), ev("c"), ev("b"), ev("d")};
  const auto p = pointers_to(in);
  const DistinctEvents d = dedupe(p);              // a b c d, slots 0 1 -1 2 -1 3
  const DistinctEvents w = without(p, d, {1, 3});  // b and d refused
  ASSERT_EQ(w.events.size(), 2u);
  EXPECT_EQ(w.events[0], &in[0]);
  EXPECT_EQ(w.events[1], &in[3]);
  EXPECT_EQ(w.slot_of, (std::vector<int32_t>{0, kRefusedSlot, -1, 1, kRefusedSlot, kRefusedSlot}));
  EXPECT_EQ(without(p, d, {}).slot_of, d.slot_of);
}

TEST(CommitVerdict, RefusedEventIsRejectedStorageRejectedWhateverTheTransaction) {
  for (const Status& st : {Status(), Status::invalid("refused")}) {
    const Verdict v = commit_verdict(st, kRefusedSlot, {true}, "check constraint x");
    EXPECT_EQ(v.status, ItemStatus::rejected);
    EXPECT_EQ(v.code, kStorageRejected);
    EXPECT_NE(v.message.find("check constraint x"), std::string::npos);
    EXPECT_FALSE(v.server_failure()) << "the answer is at fault: not a 503";
  }
}

// ---- notifications ----

TEST(AnswerResult, CarriesTheEventAndADeterministicId) {
  AnswerEvent e = ev("evt-\"7\"", 9, 12345, 3, 0);
  e.correct = true;
  e.points = 876;
  const Notification n = answer_result(e);
  EXPECT_EQ(n.key, "12345");
  rapidjson::Document doc;
  ASSERT_FALSE(doc.Parse(n.value.c_str()).HasParseError()) << n.value;
  EXPECT_STREQ(doc["notification_id"].GetString(), "answer_result:9:12345:evt-\"7\"");
  EXPECT_STREQ(doc["type"].GetString(), "answer_result");
  EXPECT_EQ(doc["quiz_id"].GetInt64(), 9);
  EXPECT_EQ(doc["user_id"].GetInt64(), 12345);
  EXPECT_EQ(doc["question_id"].GetInt(), 3);
  EXPECT_STREQ(doc["event_id"].GetString(), "evt-\"7\"");
  EXPECT_TRUE(doc["correct"].GetBool());
  EXPECT_EQ(doc["points"].GetInt64(), 876);
  EXPECT_EQ(answer_result(e).value, n.value);
}

// ---- BatchBuffers::next_due_ms ----

class Due : public ::testing::Test {
 protected:
  EventRef make(int64_t quiz) {
    auto r = std::make_shared<Request>("", nullptr);
    Item item;
    std::string id = "e";
    id += std::to_string(next_++);
    item.event = ev(id, quiz);
    r->items.push_back(std::move(item));
    return EventRef{r, 0};
  }
  int next_ = 0;
};

TEST_F(Due, NothingBufferedIsNeverDue) {
  BatchBuffers b(BatchPolicy{3, 5});
  EXPECT_EQ(b.next_due_ms(1000), INT64_MAX);
}

TEST_F(Due, DelayDueIsTheOldestArrivalPlusTheDelay) {
  BatchBuffers b(BatchPolicy{10, 5});
  b.add(make(1), 100);
  b.add(make(1), 103);
  b.add(make(2), 101);
  EXPECT_EQ(b.next_due_ms(100), 105);
  EXPECT_EQ(b.next_due_ms(104), 105);
  EXPECT_EQ(b.next_due_ms(250), 250);  // overdue: now
}

TEST_F(Due, SizeDueOrClosingIsNow) {
  BatchBuffers b(BatchPolicy{2, 1000});
  b.add(make(1), 100);
  EXPECT_EQ(b.next_due_ms(100), 1100);
  b.add(make(1), 101);
  EXPECT_EQ(b.next_due_ms(101), 101);
  BatchBuffers c(BatchPolicy{2, 1000});
  c.add(make(3), 100);
  c.close(3);
  EXPECT_EQ(c.next_due_ms(102), 102);
}

TEST_F(Due, QuizzesWithABatchInFlightAreIgnored) {
  BatchBuffers b(BatchPolicy{2, 5});
  b.add(make(1), 100);
  ASSERT_EQ(b.take_due(105).size(), 1u);
  // Quiz 1 is in flight: its new events, however many or old, wait for done().
  b.add(make(1), 106);
  b.add(make(1), 106);
  b.add(make(1), 106);
  b.close(1);
  EXPECT_EQ(b.next_due_ms(500), INT64_MAX);
  // Another quiz is due on its own terms.
  b.add(make(2), 200);
  EXPECT_EQ(b.next_due_ms(201), 205);
  b.done(1);
  EXPECT_EQ(b.next_due_ms(201), 201);
}

// next_due_ms(now) is the first time >= now at which take_due would take something (nothing
// added meanwhile), on random buffer states.
TEST_F(Due, AgreesWithTheFirstTimeTakeDueTakesSomething) {
  std::mt19937 rng(5);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int round = 0; round < 300; ++round) {
    const int64_t delay = uni(0, 20);
    BatchBuffers b(BatchPolicy{static_cast<size_t>(uni(1, 6)), delay});
    int64_t now = 1000;
    const int steps = uni(0, 30);
    for (int step = 0; step < steps; ++step) {
      now += uni(0, 4);
      switch (uni(0, 5)) {
        case 0:
          b.take_due(now, false, static_cast<size_t>(uni(1, 8)));
          break;
        case 1:
          b.done(uni(1, 4));
          break;
        case 2:
          if (uni(0, 3) == 0) b.close(uni(1, 4));
          break;
        default:
          b.add(make(uni(1, 4)), now);
      }
    }
    const int64_t got = b.next_due_ms(now);
    int64_t want = INT64_MAX;
    for (int64_t t = now; t <= now + delay + 1; ++t) {
      BatchBuffers copy = b;
      if (!copy.take_due(t).empty()) {
        want = t;
        break;
      }
    }
    ASSERT_EQ(got, want) << "round " << round;
  }
}

}  // namespace
}  // namespace quizflow::stages
