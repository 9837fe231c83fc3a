// Event files against the real PostgreSQL: the event log read back by binary COPY and written as
// JSON lines — a quiz line (definition, state, rewards granted) before each quiz's answers — that
// the reader reads back unchanged, quiz by quiz in key order, chosen quizzes only, past COPY's
// chunk boundaries; a failing output is an error, not a short file; a bad line is refused with
// its number.
#include "ingress/event_file.h"

#include <gtest/gtest.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "egress/batch_writer.h"
#include "egress/pg_store.h"
#include "pipeline/replay.h"
#include "stages/ingest.h"
#include "support/test_db.h"
#include "unit/test_util.h"

namespace quizflow::testing {
namespace {

using egress::PgBatchWriter;
using egress::PgPool;
using egress::PoolOptions;

class EventFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(store->migrate().ok());
    pool = std::make_shared<PgPool>(PoolOptions{db.url(), 1, 0, 5000, 30000});
    writer = std::make_unique<PgBatchWriter>(pool, metrics);
  }

  static AnswerEvent event(const std::string& id, int64_t quiz, int64_t user, int64_t at_ms) {
    AnswerEvent e;
    e.event_id = id;
    e.quiz_id = quiz;
    e.user_id = user;
    e.question_id = 3;
    e.option_id = 2;
    e.answered_at_ms = at_ms;
    e.elapsed_ms = 1234;
    return e;
  }

  static QuizDef quiz_def(int64_t quiz) {
    QuizDef d;
    d.quiz_id = quiz;
    d.title = test::cat("quiz \"", quiz, "\" ü");
    d.opens_at_ms = 0;
    d.closes_at_ms = 4102444800002;
    d.questions = {Question{3, 4, 2, 500, 10000}, Question{4, 2, 0, 1000, 20000}};
    d.rewards = {RewardTier{1, 1, "gold"}, RewardTier{2, 3, "silver \"x\""}};
    return d;
  }

  // Stores `events` of `quiz` (its definition too, so that "every quiz" finds it).
  void store_events(int64_t quiz, const std::vector<AnswerEvent>& events) {
    const auto saved = store->save_quiz(quiz_def(quiz));
    ASSERT_TRUE(saved.ok()) << saved.status().to_string();
    std::vector<const AnswerEvent*> ptrs;
    for (const auto& e : events) ptrs.push_back(&e);
    const auto out = writer->commit(BatchTxn{{quiz}, test::cat("k", quiz), ptrs},
                                    [](const std::vector<bool>&) { return DerivedRows{}; });
    ASSERT_TRUE(out.ok()) << out.status().to_string();
  }

  // The file's answers (a line that does not read fails the test), and its quiz lines.
  static std::vector<AnswerEvent> decode(const std::string& file,
                                         std::vector<SourceQuiz>* quizzes = nullptr) {
    std::vector<AnswerEvent> out;
    std::istringstream in(file);
    ingress::EventFileReader reader(in);
    SourceQuiz q;
    AnswerEvent e;
    for (;;) {
      auto kind = reader.next(q, e);
      EXPECT_TRUE(kind.ok()) << kind.status().to_string();
      if (!kind.ok() || *kind == ingress::EventFileReader::Kind::end) break;
      if (*kind == ingress::EventFileReader::Kind::event) {
        out.push_back(e);
      } else if (quizzes) {
        quizzes->push_back(q);
      }
    }
    return out;
  }

  // What reading `file` says: the kinds of its lines, then the error that stopped it.
  static std::string read_all(const std::string& file) {
    std::istringstream in(file);
    ingress::EventFileReader reader(in);
    SourceQuiz q;
    AnswerEvent e;
    std::string kinds;
    for (;;) {
      auto kind = reader.next(q, e);
      if (!kind.ok()) return kinds + kind.status().to_string();
      if (*kind == ingress::EventFileReader::Kind::end) return kinds + "end";
      kinds += *kind == ingress::EventFileReader::Kind::quiz ? "Q " : "E ";
    }
  }

  TestDatabase db;
  std::unique_ptr<Store> store = std::make_unique<egress::PgStore>(PoolOptions{db.url()});
  std::shared_ptr<PgPool> pool;
  BatchMetrics metrics;
  std::unique_ptr<PgBatchWriter> writer;
};

TEST_F(EventFileTest, EveryEventIsOneAnswerLineThatReadsBackUnchanged) {
  // Out of key order on purpose; a millisecond instant, one before 2000, one far ahead.
  store_events(8, {event("b", 8, 2, 1795000000123), event("a", 8, 1, 946684799999)});
  store_events(7, {event("z:9", 7, 5, 4102444800001), event("m.1-x_2", 7, 4, 1)});
  std::ostringstream out;
  const auto r = ingress::export_events(*store, {}, out);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->events, 4);
  EXPECT_EQ(r->quizzes, 2);
  std::vector<SourceQuiz> quizzes;
  const std::vector<AnswerEvent> back = decode(out.str(), &quizzes);
  ASSERT_EQ(back.size(), 4u) << out.str();
  // One quiz line before each quiz's answers, its definition as stored.
  EXPECT_EQ(read_all(out.str()), "Q E E Q E E end");
  ASSERT_EQ(quizzes.size(), 2u);
  EXPECT_EQ(quizzes[0].def, quiz_def(7));
  EXPECT_EQ(quizzes[0].state, QuizState::open);
  EXPECT_TRUE(quizzes[0].rewards.empty());
  EXPECT_EQ(quizzes[1].def, quiz_def(8));
  // Quiz by quiz, each by event_id.
  const std::vector<AnswerEvent> want{event("m.1-x_2", 7, 4, 1), event("z:9", 7, 5, 4102444800001),
                                      event("a", 8, 1, 946684799999),
                                      event("b", 8, 2, 1795000000123)};
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(back[i].event_id, want[i].event_id);
    EXPECT_EQ(back[i].quiz_id, want[i].quiz_id);
    EXPECT_EQ(back[i].user_id, want[i].user_id);
    EXPECT_EQ(back[i].question_id, want[i].question_id);
    EXPECT_EQ(back[i].option_id, want[i].option_id);
    EXPECT_EQ(back[i].answered_at_ms, want[i].answered_at_ms);
    EXPECT_EQ(back[i].elapsed_ms, want[i].elapsed_ms);
  }
}

TEST_F(EventFileTest, OnlyTheChosenQuizzes) {
  store_events(7, {event("a", 7, 1, 1000)});
  store_events(8, {event("a", 8, 1, 1000), event("b", 8, 2, 1000)});
  store_events(9, {event("a", 9, 1, 1000)});
  std::ostringstream out;
  const auto r = ingress::export_events(*store, {9, 8, 9}, out);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->events, 3);
  const auto back = decode(out.str());
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[0].quiz_id, 8);
  EXPECT_EQ(back[2].quiz_id, 9);
}

TEST_F(EventFileTest, ManyEventsCrossCopyChunksAndProgressIsReported) {
  std::vector<AnswerEvent> events;
  for (int i = 0; i < 20000; ++i) events.push_back(event(test::cat("e", i), 5, i + 1, 1000 + i));
  store_events(5, events);
  std::ostringstream out;
  int64_t reports = 0, last = 0;
  const auto r = ingress::export_events(
      *store, {5}, out,
      [&](int64_t n, double) {
        ++reports;
        EXPECT_GT(n, last);
        last = n;
      },
      /*every_s=*/0);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->events, 20000);
  EXPECT_GT(reports, 0);
  const auto back = decode(out.str());
  ASSERT_EQ(back.size(), 20000u);
  int64_t sum = 0;
  for (const auto& e : back) sum += e.user_id;
  EXPECT_EQ(sum, int64_t{20000} * 20001 / 2);
}

TEST_F(EventFileTest, AFailingOutputIsAnErrorAndTheConnectionServesOn) {
  store_events(7, {event("a", 7, 1, 1000), event("b", 7, 2, 1000)});
  std::ostringstream broken;
  broken.setstate(std::ios::badbit);
  const auto r = ingress::export_events(*store, {}, broken);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::internal);
  std::ostringstream out;
  const auto again = ingress::export_events(*store, {}, out);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_EQ(again->events, 2);
}

TEST_F(EventFileTest, AFinalizedQuizCarriesItsStateAndTheRewardsGranted) {
  store_events(7, {event("a", 7, 1, 1000), event("b", 7, 2, 1000)});
  const auto fin = writer->finalize(
      7,
      [](std::vector<StandingRow>) {
        FinalRows rows;
        rows.rewards = {RewardRow{2, 1, "gold"}, RewardRow{1, 2, "silver \"x\""}};
        return rows;
      },
      /*outbox=*/false);
  ASSERT_TRUE(fin.ok()) << fin.status().to_string();
  std::ostringstream out;
  ASSERT_TRUE(ingress::export_events(*store, {}, out).ok());
  std::vector<SourceQuiz> quizzes;
  EXPECT_EQ(decode(out.str(), &quizzes).size(), 2u);
  ASSERT_EQ(quizzes.size(), 1u);
  EXPECT_EQ(quizzes[0].state, QuizState::finalized);
  ASSERT_EQ(quizzes[0].rewards.size(), 2u);
  EXPECT_EQ(quizzes[0].rewards[0].user_id, 2);
  EXPECT_EQ(quizzes[0].rewards[0].reward, "gold");
  EXPECT_EQ(quizzes[0].rewards[1].rank, 2);
  EXPECT_EQ(quizzes[0].rewards[1].reward, "silver \"x\"");
}

TEST_F(EventFileTest, ABadLineIsRefusedWithItsNumberAndBlankLinesAreSkipped) {
  const std::string answer =
      R"({"event_id":"a","quiz_id":7,"user_id":1,"question_id":3,"option_id":2,)"
      R"("answered_at":"2026-01-01T00:00:00.000Z","elapsed_ms":5})";
  EXPECT_EQ(read_all(answer + "\n\n  \r\n" + answer + "\r\n"), "E E end");
  EXPECT_EQ(read_all(answer + "\n{not json\n"),
            "E invalid: line 2: malformed_json: not a JSON object");
  EXPECT_EQ(read_all("[1]\n"), "invalid: line 1: malformed_json: not a JSON object");
  const std::string wrong_type =
      R"({"event_id":"a","quiz_id":"7","user_id":1,"question_id":3,)"
      R"("option_id":2,"answered_at":"2026-01-01T00:00:00Z","elapsed_ms":5})";
  const std::string r = read_all(wrong_type + "\n");
  EXPECT_EQ(r.rfind("invalid: line 1: schema: ", 0), 0u) << r;
  EXPECT_NE(r.find("(field quiz_id)"), std::string::npos) << r;
  // Quiz lines: strict too.
  std::ostringstream out;
  store_events(7, {event("a", 7, 1, 1000)});
  ASSERT_TRUE(ingress::export_events(*store, {}, out).ok());
  const std::string quiz_line = out.str().substr(0, out.str().find('\n'));
  EXPECT_EQ(read_all(quiz_line + "\n"), "Q end");
  auto with = [&](const std::string& from, const std::string& to) {
    std::string l = quiz_line;
    const size_t at = l.find(from);
    EXPECT_NE(at, std::string::npos) << l;
    if (at != std::string::npos) l.replace(at, from.size(), to);
    return read_all(l + "\n");
  };
  EXPECT_EQ(
      with(R"("state":"open")", R"("state":"gone")"),
      R"(invalid: line 1: schema: state must be "open", "closed" or "finalized" (field state))");
  EXPECT_EQ(with(R"("rewards":[])", R"("rewards":[{"user_id":1,"rank":1,"reward":"x"}])"),
            "invalid: line 1: schema: only a finalized quiz has granted rewards (field rewards)");
  EXPECT_EQ(with(R"("rewards":[])", R"("extra":1)"),
            "invalid: line 1: schema: unknown field extra (field extra)");
  EXPECT_EQ(with(R"("state":"open","rewards":[])",
                 R"("state":"finalized","rewards":[{"user_id":1,"rank":1,"reward":"x"},)"
                 R"({"user_id":1,"rank":2,"reward":"y"}])"),
            "invalid: line 1: schema: user 1 has two rewards (field rewards)");
  EXPECT_EQ(with(R"("events":1)", R"("events":-1)"),
            "invalid: line 1: schema: events must be a count of answer lines (field events)");
  const std::string bad_def = with(R"("title":)", R"("titel":)");
  EXPECT_EQ(bad_def.rfind("invalid: line 1: schema: ", 0), 0u) << bad_def;
  EXPECT_NE(bad_def.find("(field quiz."), std::string::npos) << bad_def;
}

// A file cut short: the quiz whose answers do not all follow its line is refused with that
// line's number, nothing of it stored; the quizzes before it stay imported.
TEST_F(EventFileTest, AQuizWithFewerAnswersThanItsLineAnnouncesIsRefused) {
  store_events(7, {event("a", 7, 1, 1000), event("b", 7, 2, 1000)});
  store_events(8, {event("a", 8, 1, 1000), event("b", 8, 2, 1000), event("c", 8, 3, 1000)});
  std::ostringstream out;
  ASSERT_TRUE(ingress::export_events(*store, {}, out).ok());
  std::string file = out.str();
  file.erase(file.rfind('\n', file.size() - 2) + 1);  // the last answer line gone
  TestDatabase target;
  egress::PgStore to(PoolOptions{target.url()});
  ASSERT_TRUE(to.migrate().ok());
  std::istringstream in(file);
  ingress::EventFileRuns runs(in, static_cast<int64_t>(file.size()), {});
  const auto r = replay_runs(to, runs, ReplayOptions{/*dry_run=*/false, 5});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::invalid);
  EXPECT_EQ(r.status().message(),
            "line 4: quiz 8 announces 3 answers and 2 follow (a file cut short?); nothing of this "
            "quiz was imported");
  EXPECT_EQ(target.query("SELECT quiz_id, count(*) FROM answer_events GROUP BY 1 ORDER BY 1"),
            (std::vector<std::vector<std::string>>{{"7", "2"}}));
  EXPECT_EQ(target.query("SELECT quiz_id FROM quizzes ORDER BY 1"),
            (std::vector<std::vector<std::string>>{{"7"}}));
}

}  // namespace
}  // namespace quizflow::testing
