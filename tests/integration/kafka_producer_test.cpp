// egress/kafka_producer.h against librdkafka's mock cluster: a constructor that throws leaves no
// librdkafka thread behind; publish() never waits, whatever the broker does (librdkafka's
// bounded queue, then the producer's own backlog, then refusal counted as failed); once the
// broker is back, everything that was taken is delivered, in order.
#include "egress/kafka_producer.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
// rdkafka_mock.h must follow rdkafka.h.
#include <librdkafka/rdkafka_mock.h>

#include <chrono>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/test_db.h"

namespace quizflow::testing {
namespace {

using egress::KafkaOptions;
using egress::KafkaProducer;
using Clock = std::chrono::steady_clock;

bool wait_until(const std::function<bool()>& cond,
                std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  const auto deadline = Clock::now() + timeout;
  while (!cond()) {
    if (Clock::now() >= deadline) return cond();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// The librdkafka threads of this process settle (a handle destroyed by an earlier test may
// still be winding down); returns the settled count.
int settled_thread_count() {
  int last = rd_kafka_thread_cnt(), same = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (last != 0 && same < 5 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const int now = rd_kafka_thread_cnt();
    same = now == last ? same + 1 : 0;
    last = now;
  }
  return last;
}

// A one-broker mock cluster of our own (hosted by its own rd_kafka_t) with one single-partition
// topic, so that the order of messages is observable.
class MockCluster {
 public:
  explicit MockCluster(const std::string& topic) {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    host_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!host_) {
      rd_kafka_conf_destroy(conf);
      throw std::runtime_error(err);
    }
    mock_ = rd_kafka_mock_cluster_new(host_, 1);
    if (!mock_) throw std::runtime_error("rd_kafka_mock_cluster_new failed");
    if (rd_kafka_mock_topic_create(mock_, topic.c_str(), 1, 1) != RD_KAFKA_RESP_ERR_NO_ERROR)
      throw std::runtime_error("rd_kafka_mock_topic_create failed");
  }
  ~MockCluster() {
    rd_kafka_mock_cluster_destroy(mock_);
    rd_kafka_destroy(host_);
  }
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  std::string bootstrap() const { return rd_kafka_mock_cluster_bootstraps(mock_); }
  void broker_down() { ASSERT_EQ(rd_kafka_mock_broker_set_down(mock_, 1), 0); }
  void broker_up() { ASSERT_EQ(rd_kafka_mock_broker_set_up(mock_, 1), 0); }

 private:
  rd_kafka_t* host_ = nullptr;
  rd_kafka_mock_cluster_t* mock_ = nullptr;
};

std::vector<Notification> messages(int from, int n) {
  std::vector<Notification> out;
  for (int i = from; i < from + n; ++i)
    out.push_back(Notification{std::string("k").append(std::to_string(i % 7)),
                               std::string("m").append(std::to_string(i))});
  return out;
}

// Publishes and checks that the call returned promptly (a producer that waited for room in
// librdkafka's queue would block until the broker comes back, i.e. for ever here).
size_t publish_without_waiting(KafkaProducer& p, int from, int n) {
  auto batch = messages(from, n);
  const auto t0 = Clock::now();
  const size_t refused = p.publish(batch);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5)) << "publish() waited";
  return refused;
}

// The producer's queue_size once librdkafka has served its pending callbacks: rd_kafka_outq_len
// also counts events waiting for rd_kafka_poll (a broker-down error right after connecting
// showed up as one more "queued" message for a few milliseconds).
int64_t settled_queue_size(const KafkaProducer& p, int64_t want) {
  wait_until([&] { return p.stats().queue_size == want; }, std::chrono::seconds(5));
  return p.stats().queue_size;
}

// The values of `topic` from the start, as a set (the mock may repeat an idempotent retry).
std::set<std::string> consumed(const std::string& bootstrap, const std::string& topic,
                               size_t expected) {
  std::set<std::string> out;
  for (const auto& [key, value] : consume_all(bootstrap, topic, expected, 30000)) out.insert(value);
  return out;
}

std::set<std::string> values(int from, int n) {
  std::set<std::string> out;
  for (int i = from; i < from + n; ++i) out.insert(std::string("m").append(std::to_string(i)));
  return out;
}

TEST(KafkaProducer, ConstructorThatThrowsLeavesNoLibrdkafkaThreadBehind) {
  const int before = settled_thread_count();
  // The measurement means something: a producer that constructs (mock host, mock cluster,
  // producer) runs librdkafka threads, and they are gone after its destructor.
  {
    KafkaOptions ok;
    KafkaProducer p(ok);
    EXPECT_GT(rd_kafka_thread_cnt(), before);
  }
  EXPECT_TRUE(wait_until([&] { return rd_kafka_thread_cnt() == before; }))
      << rd_kafka_thread_cnt() << " threads, " << before << " before";

  // Empty brokers: the mock cluster and its host are created first, then the producer's
  // configuration fails on the unknown property.
  KafkaOptions bad;
  bad.properties = {{"no.such.property", "1"}};
  try {
    KafkaProducer p(bad);
    ADD_FAILURE() << "an unknown librdkafka property was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no.such.property"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(wait_until([&] { return rd_kafka_thread_cnt() == before; }))
      << rd_kafka_thread_cnt() << " librdkafka threads left, " << before << " before";
}

TEST(KafkaProducer, PublishNeverWaitsWhileTheBrokerIsDownAndDeliversAllOnceItIsBack) {
  const std::string topic = "notes.down";
  MockCluster cluster(topic);
  cluster.broker_down();
  KafkaOptions o;
  o.brokers = cluster.bootstrap();
  o.topic = topic;
  o.queue_max = 10;  // librdkafka takes 10; the backlog (unbounded here) holds the rest
  KafkaProducer p(o);

  EXPECT_EQ(publish_without_waiting(p, 0, 200), 0u);
  EXPECT_EQ(settled_queue_size(p, 200), 200);
  SinkStats s = p.stats();
  EXPECT_EQ(s.delivered, 0);
  EXPECT_EQ(s.failed, 0);

  cluster.broker_up();
  p.flush(30000);
  EXPECT_TRUE(wait_until([&] { return p.stats().delivered == 200; }))
      << p.stats().delivered << " delivered";
  s = p.stats();
  EXPECT_EQ(s.delivered, 200);
  EXPECT_EQ(s.failed, 0);
  EXPECT_EQ(s.queue_size, 0);
  EXPECT_EQ(consumed(o.brokers, topic, 200), values(0, 200));
}

TEST(KafkaProducer, PublishRefusesWhatExceedsTheBacklogAndCountsItFailed) {
  const std::string topic = "notes.backlog";
  MockCluster cluster(topic);
  cluster.broker_down();
  KafkaOptions o;
  o.brokers = cluster.bootstrap();
  o.topic = topic;
  o.queue_max = 10;
  o.backlog_max = 50;
  KafkaProducer p(o);

  // 10 to librdkafka, 50 to the backlog, 140 refused.
  EXPECT_EQ(publish_without_waiting(p, 0, 200), 140u);
  EXPECT_EQ(settled_queue_size(p, 60), 60);
  SinkStats s = p.stats();
  EXPECT_EQ(s.failed, 140);
  // Everything is full: a further publish refuses all of it.
  EXPECT_EQ(publish_without_waiting(p, 200, 5), 5u);
  EXPECT_EQ(settled_queue_size(p, 60), 60);
  s = p.stats();
  EXPECT_EQ(s.failed, 145);
  EXPECT_EQ(s.delivered, 0);

  cluster.broker_up();
  p.flush(30000);
  EXPECT_TRUE(wait_until([&] { return p.stats().delivered == 60; }))
      << p.stats().delivered << " delivered";
  s = p.stats();
  EXPECT_EQ(s.delivered, 60);
  EXPECT_EQ(s.failed, 145);
  EXPECT_EQ(s.queue_size, 0);
  // What was taken is the first 60 published; the refused ones never went out.
  EXPECT_EQ(consumed(o.brokers, topic, 60), values(0, 60));
}

}  // namespace
}  // namespace quizflow::testing
