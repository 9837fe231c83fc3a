// Event files against the real PostgreSQL: the event log read back by binary COPY and written as
// JSON lines that the answer decoder reads back unchanged, quiz by quiz in key order, chosen
// quizzes only, past COPY's chunk boundaries; a failing output is an error, not a short file.
#include "ingress/event_file.h"

#include <gtest/gtest.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "egress/batch_writer.h"
#include "egress/pg_store.h"
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

  // Stores `events` of `quiz` (its row in quizzes too, so that "every quiz" finds it).
  void store_events(int64_t quiz, const std::vector<AnswerEvent>& events) {
    db.query(
        test::cat("INSERT INTO quizzes (quiz_id, title, opens_at, closes_at, definition) "
                  "VALUES (",
                  quiz, ", 't', now(), now() + interval '1 day', '{}')"));
    std::vector<const AnswerEvent*> ptrs;
    for (const auto& e : events) ptrs.push_back(&e);
    const auto out = writer->commit(BatchTxn{{quiz}, test::cat("k", quiz), ptrs},
                                    [](const std::vector<bool>&) { return DerivedRows{}; });
    ASSERT_TRUE(out.ok()) << out.status().to_string();
  }

  // The file's lines decoded as answers (a line that does not decode fails the test).
  static std::vector<AnswerEvent> decode(const std::string& file) {
    std::vector<AnswerEvent> out;
    std::istringstream in(file);
    std::string line;
    while (std::getline(in, line)) {
      Item item = stages::decode_answer_json(line);
      EXPECT_TRUE(item.event.has_value()) << line << ": " << item.verdict.message;
      if (item.event) out.push_back(*item.event);
    }
    return out;
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
  const std::vector<AnswerEvent> back = decode(out.str());
  ASSERT_EQ(back.size(), 4u) << out.str();
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

}  // namespace
}  // namespace quizflow::testing
