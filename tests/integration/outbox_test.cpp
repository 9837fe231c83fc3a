// The transactional outbox (spec §4 notifications, §5 invariant 1 for notifications): every
// notification is stored with the change that caused it and reaches Kafka even when every broker
// is down for longer than the producer's message timeout. The brokers are a librdkafka mock
// cluster in a child process (tests/support/mock_kafka_process.h); the topic is read back with a
// real librdkafka consumer.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>

#include "core/time_util.h"
#include "egress/kafka_producer.h"
#include "egress/pg_store.h"
#include "integration/workload.h"
#include "support/kafka_reader.h"
#include "support/mock_kafka_process.h"
#include "support/test_db.h"
#include "unit/test_util.h"

namespace quizflow::testing {
namespace {

using namespace std::chrono_literals;

// The expected answer_result notification_ids of `answers` (each its own (user, question): all
// count).
std::set<std::string> answer_result_ids(const std::vector<SentAnswer>& answers) {
  std::set<std::string> ids;
  for (const auto& a : answers)
    ids.insert(test::cat("answer_result:", a.quiz_id, ":", a.user_id, ":", a.event_id));
  return ids;
}

// Checks the topic holds every id of `want`, and that a notification_id seen twice has the same
// content each time. Returns the ids seen.
std::set<std::string> check_topic(const std::vector<KafkaMessage>& msgs,
                                  const std::set<std::string>& want) {
  std::map<std::string, std::string> seen;
  for (const KafkaMessage& m : msgs) {
    const std::string id = json_string_field(m.value, "notification_id");
    EXPECT_FALSE(id.empty()) << m.value;
    auto [it, fresh] = seen.emplace(id, m.value);
    if (!fresh) {
      EXPECT_EQ(it->second, m.value) << "a duplicate with other content: " << id;
    }
  }
  std::set<std::string> ids;
  for (const auto& [id, v] : seen) ids.insert(id);
  for (const auto& id : want) EXPECT_TRUE(ids.count(id)) << "lost: " << id;
  return ids;
}

TEST(Outbox, BrokersDownLongerThanTheMessageTimeoutLoseNothing) {
  MockKafkaProcess kafka;
  TestDatabase db;
  Config c = test_config(db.url());
  c.kafka_brokers = kafka.bootstrap();
  c.kafka_message_timeout_ms = 1500;
  c.outbox_relay_after_ms = 300;
  Engine e(c, std::make_unique<egress::PgStore>(egress::PoolOptions{db.url()}),
           std::make_unique<egress::KafkaProducer>(egress::kafka_options(c)));
  ASSERT_TRUE(e.start().ok());
  const int64_t now = now_ms();
  QuizDef q;
  q.quiz_id = 61;
  q.title = "outbox";
  q.opens_at_ms = now - 60000;
  q.closes_at_ms = now + 3600000;
  for (int k = 1; k <= 2; ++k) q.questions.push_back(Question{k, 4, 1, 1000, 20000});
  ASSERT_TRUE(e.create_quiz(q).ok());

  kafka.brokers_down();
  std::vector<SentAnswer> sent;
  for (int round = 0; round < 4; ++round) {
    std::string body = "{\"answers\":[";
    for (int64_t u = 1; u <= 25; ++u) {
      SentAnswer a;
      a.event_id = test::cat("ob-", round, "-", u);
      a.quiz_id = 61;
      a.user_id = u + 25 * (round / 2);
      a.question_id = 1 + round % 2;
      a.option_id = u % 4;
      a.answered_at_ms = now - 1000 + round;
      a.elapsed_ms = u * 10;
      if (u > 1) body += ',';
      body += answer_json(a);
      sent.push_back(a);
    }
    body += "]}";
    for (const auto& it : submit_and_wait(e, body).items)
      ASSERT_EQ(it.verdict.status, ItemStatus::accepted);
  }
  // Acknowledged and stored; the deliveries time out; the rows stay.
  ASSERT_TRUE(test::wait_until([&] { return e.metrics().lifecycle.undelivered.load() >= 4; }, 15s))
      << "no delivery failed while every broker was down";
  EXPECT_GE(db.scalar("SELECT count(*) FROM outbox"), 1);
  EXPECT_GE(db.scalar("SELECT coalesce(sum(messages), 0) FROM outbox"), 100);

  kafka.brokers_up();
  ASSERT_TRUE(test::wait_until([&] { return db.scalar("SELECT count(*) FROM outbox") == 0; }, 30s))
      << "the outbox was not emptied once the brokers came back";
  const auto msgs = read_topic(kafka.bootstrap(), c.topic_notifications, 100);
  const auto ids = check_topic(msgs, answer_result_ids(sent));
  EXPECT_GE(e.metrics().lifecycle.resent.load(), 1);
  EXPECT_GE(e.metrics().lifecycle.relayed.load(), static_cast<int64_t>(ids.size()));
  e.stop();
}

}  // namespace
}  // namespace quizflow::testing
