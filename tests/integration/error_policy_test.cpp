// The nodes' error policy (docs/error-policy.md) under a running engine: an exception thrown
// into a graph node (by the notification sink) or out of a completion callback is caught,
// counted and logged; it cancels nothing, and the answers beside it are stored and answered.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/time_util.h"
#include "egress/pg_store.h"
#include "support/test_db.h"
#include "unit/test_util.h"

namespace quizflow::testing {
namespace {

// A sink whose publish throws while armed (a bug in a transport), counting otherwise.
class ThrowingSink final : public NotificationSink {
 public:
  explicit ThrowingSink(std::shared_ptr<std::atomic<int>> throws) : throws_(std::move(throws)) {}
  void set_delivery_listener(DeliveryFn fn) override {
    inner_.set_delivery_listener(std::move(fn));
  }
  size_t publish(std::vector<Notification>& batch, int64_t outbox_id = 0) override {
    if (throws_->load() > 0) {
      throws_->fetch_sub(1);
      throw std::runtime_error("injected: the sink threw");
    }
    return inner_.publish(batch, outbox_id);
  }
  void flush(int ms) override { inner_.flush(ms); }
  SinkStats stats() const override { return inner_.stats(); }
  Status health() override { return inner_.health(); }
  std::string bootstrap() const override { return inner_.bootstrap(); }
  std::vector<Notification> taken() const { return inner_.taken(); }

 private:
  std::shared_ptr<std::atomic<int>> throws_;
  CountingSink inner_;
};

QuizDef quiz(int64_t id) {
  QuizDef q;
  q.quiz_id = id;
  q.title = "errors";
  q.opens_at_ms = *parse_rfc3339_ms("2026-01-01T00:00:00Z");
  q.closes_at_ms = *parse_rfc3339_ms("2027-01-01T00:00:00Z");
  q.questions.push_back(Question{1, 4, 2, 1000, 20000});
  return q;
}

std::string answer(const std::string& id, int64_t user) {
  return R"({"event_id":")" + id + R"(","quiz_id":77,"user_id":)" + std::to_string(user) +
         R"(,"question_id":1,"option_id":2,"answered_at":"2026-06-01T10:00:00.000Z","elapsed_ms":500})";
}

class ErrorPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Config c = test_config(db.url());
    c.outbox_relay_after_ms = 200;
    auto sink = std::make_unique<ThrowingSink>(throws);
    sink_ = sink.get();
    engine = std::make_unique<Engine>(
        c, std::make_unique<egress::PgStore>(egress::PoolOptions{db.url()}), std::move(sink));
    const Status st = engine->start();
    ASSERT_TRUE(st.ok()) << st.to_string();
    const auto r = engine->create_quiz(quiz(77));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
  }
  void TearDown() override {
    if (engine) engine->stop();
  }

  TestDatabase db;
  std::shared_ptr<std::atomic<int>> throws = std::make_shared<std::atomic<int>>(0);
  ThrowingSink* sink_ = nullptr;
  std::unique_ptr<Engine> engine;
};

TEST_F(ErrorPolicyTest, AnExceptionInTheNotifyNodeCancelsNothing) {
  throws->store(1);
  const Answered first = submit_and_wait(*engine, answer("ep-1", 1));
  ASSERT_EQ(first.items.size(), 1u);
  EXPECT_EQ(first.items[0].verdict.status, ItemStatus::accepted);
  // The notify node ran into the exception after the answer was committed and answered; its
  // recovery counts the messages as failed: the answer_result and the rank_changed of the
  // first player entering the top 10.
  ASSERT_TRUE(test::wait_until([&] { return engine->metrics().stages[kNotify].failed.load() == 2; },
                               std::chrono::seconds(10)));
  EXPECT_EQ(engine->metrics().internal_errors.load(), 1);
  EXPECT_EQ(throws->load(), 0) << "the sink was never called";

  // The graph still runs: later answers are stored, answered and notified.
  const Answered second = submit_and_wait(*engine, answer("ep-2", 2));
  ASSERT_EQ(second.items.size(), 1u);
  EXPECT_EQ(second.items[0].verdict.status, ItemStatus::accepted);
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events WHERE quiz_id = 77"), 2);
  EXPECT_FALSE(engine->metrics().degraded.load()) << "a failed publish is not a divergence";
  // Nothing was lost: the first answer's notifications stayed in the outbox and the relay's
  // sweep published them; every row is delivered and deleted.
  ASSERT_TRUE(test::wait_until([&] { return db.scalar("SELECT count(*) FROM outbox") == 0; },
                               std::chrono::seconds(10)));
  bool first_notified = false;
  for (const Notification& m : sink_->taken())
    first_notified |= m.value.find("answer_result:77:1:ep-1") != std::string::npos;
  EXPECT_TRUE(first_notified) << "the answer_result of ep-1 never reached the sink";
  EXPECT_TRUE(engine->health().running);
}

TEST_F(ErrorPolicyTest, ACompletionThatThrowsIsCountedAndTheEngineGoesOn) {
  std::promise<void> called;
  const SubmitResult res = engine->submit(answer("ep-3", 3), [&called](Request&) {
    called.set_value();
    throw std::runtime_error("injected: the completion threw");
  });
  ASSERT_EQ(res, SubmitResult::admitted);
  ASSERT_EQ(called.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  ASSERT_TRUE(test::wait_until([&] { return engine->metrics().internal_errors.load() == 1; },
                               std::chrono::seconds(10)));
  // The answer was committed before its completion ran, and the budget was released.
  EXPECT_EQ(db.scalar("SELECT count(*) FROM answer_events WHERE event_id = 'ep-3'"), 1);
  const Answered next = submit_and_wait(*engine, answer("ep-4", 4));
  ASSERT_EQ(next.items.size(), 1u);
  EXPECT_EQ(next.items[0].verdict.status, ItemStatus::accepted);
  EXPECT_EQ(engine->metrics().events_in_flight.load(), 0);
}

}  // namespace
}  // namespace quizflow::testing
