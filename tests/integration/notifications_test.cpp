// answer_result notifications reach Kafka (librdkafka's mock cluster): one per counted answer,
// keyed by user_id, with a deterministic notification_id; duplicates produce none.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <map>
#include <set>

#include "egress/kafka_producer.h"
#include "egress/pg_store.h"
#include "integration/workload.h"
#include "support/test_db.h"

namespace quizflow::testing {
namespace {

TEST(Notifications, OneAnswerResultPerCountedAnswerOnTheMockCluster) {
  TestDatabase db;
  Config c = test_config(db.url());
  c.topic_notifications = "test.notifications";
  c.notify_queue_max = 100000;
  auto producer = std::make_unique<egress::KafkaProducer>(egress::kafka_options(c));
  const std::string bootstrap = producer->bootstrap();
  Engine e(c, std::make_unique<egress::PgStore>(egress::PoolOptions{db.url()}),
           std::move(producer));
  ASSERT_TRUE(e.start().ok());

  QuizDef q;
  q.quiz_id = 5;
  q.title = "notify";
  q.opens_at_ms = *parse_rfc3339_ms("2026-01-01T00:00:00Z");
  q.closes_at_ms = *parse_rfc3339_ms("2027-01-01T00:00:00Z");
  for (int k = 1; k <= 4; ++k) q.questions.push_back(Question{k, 4, k % 4, 1000, 20000});
  const auto created = e.create_quiz(q);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  ASSERT_EQ(*created, SaveQuizResult::created);

  std::map<std::string, SentAnswer> sent;  // by event_id
  std::string body = "{\"answers\":[";
  for (int64_t user = 1; user <= 50; ++user) {
    for (int64_t question = 1; question <= 4; ++question) {
      SentAnswer a;
      a.event_id = "n-" + std::to_string(user) + "-" + std::to_string(question);
      a.quiz_id = 5;
      a.user_id = user;
      a.question_id = question;
      a.option_id = (user + question) % 4;
      a.answered_at_ms = q.opens_at_ms + user * 1000;
      a.elapsed_ms = user * 100;
      a.json = answer_json(a);
      if (!sent.empty()) body += ',';
      body += a.json;
      sent[a.event_id] = a;
    }
  }
  body += "]}";
  const Answered first = submit_and_wait(e, body);
  for (const auto& it : first.items) ASSERT_EQ(it.verdict.status, ItemStatus::accepted);
  const Answered again = submit_and_wait(e, body);  // all duplicates: no new notifications
  for (const auto& it : again.items) ASSERT_EQ(it.verdict.status, ItemStatus::duplicate);

  // 200 answer_result and the top 10 entering it (one transaction: ten rank_changed).
  const auto msgs = consume_all(bootstrap, c.topic_notifications, 211, 8000);
  ASSERT_EQ(msgs.size(), 210u);
  std::set<std::string> ids;
  std::set<int64_t> ranks;
  for (const auto& [key, value] : msgs) {
    rapidjson::Document d;
    d.Parse(value.c_str());
    ASSERT_FALSE(d.HasParseError()) << value;
    if (std::string(d["type"].GetString()) == "rank_changed") {
      EXPECT_EQ(d["previous_rank"].GetInt64(), 0) << value;  // not ranked before
      ranks.insert(d["rank"].GetInt64());
      EXPECT_EQ(key, std::to_string(d["user_id"].GetInt64()));
      continue;
    }
    ASSERT_STREQ(d["type"].GetString(), "answer_result");
    const std::string event_id = d["event_id"].GetString();
    ASSERT_TRUE(sent.count(event_id)) << event_id;
    const SentAnswer& a = sent[event_id];
    EXPECT_EQ(key, std::to_string(a.user_id));
    EXPECT_EQ(std::string(d["notification_id"].GetString()),
              "answer_result:5:" + std::to_string(a.user_id) + ":" + event_id);
    const bool correct = a.option_id == a.question_id % 4;
    EXPECT_EQ(d["correct"].GetBool(), correct);
    EXPECT_EQ(d["points"].GetInt64(), correct ? 1000 - (1000 * a.elapsed_ms) / 40000 : 0);
    ids.insert(event_id);
  }
  EXPECT_EQ(ids.size(), 200u);
  EXPECT_EQ(ranks, (std::set<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  e.stop();
  EXPECT_EQ(e.sink_stats().delivered, 210);
}

}  // namespace
}  // namespace quizflow::testing
