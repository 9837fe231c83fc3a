// support/mock_kafka_process.h and support/kafka_reader.h: a mock cluster in a child process
// (qf-mock-kafka) takes what a plain librdkafka producer sends, read_topic reads all of it back,
// and brokers_down()/brokers_up() make deliveries fail and then succeed again.
#include "support/mock_kafka_process.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/kafka_reader.h"
#include "unit/test_util.h"

namespace quizflow::testing {
namespace {

constexpr const char* kTopic = "quiz.notifications";

// A plain librdkafka producer that counts its delivery reports.
class Producer {
 public:
  Producer(const std::string& bootstrap,
           const std::vector<std::pair<std::string, std::string>>& props) {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    std::vector<std::pair<std::string, std::string>> all = {
        {"bootstrap.servers", bootstrap}, {"acks", "all"}, {"log_level", "3"}};
    all.insert(all.end(), props.begin(), props.end());
    for (const auto& [name, value] : all) {
      if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) !=
          RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        throw std::runtime_error(err);
      }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, &Producer::on_delivery);
    rd_kafka_conf_set_opaque(conf, this);
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk_) {
      rd_kafka_conf_destroy(conf);
      throw std::runtime_error(err);
    }
  }
  ~Producer() {
    rd_kafka_flush(rk_, 5000);
    rd_kafka_destroy(rk_);
  }
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  void produce(const std::string& key, const std::string& value) {
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        rk_, RD_KAFKA_V_TOPIC(kTopic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key.data(), key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_END);
    ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
  }
  // Waits until every produced message has its delivery report; false on timeout.
  bool flush(int timeout_ms) {
    return rd_kafka_flush(rk_, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR;
  }

  // Read after flush() (the callbacks run inside rd_kafka_flush, on this thread).
  int delivered = 0;
  int failed = 0;
  rd_kafka_resp_err_t last_error = RD_KAFKA_RESP_ERR_NO_ERROR;

 private:
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<Producer*>(opaque);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++self->delivered;
    } else {
      ++self->failed;
      self->last_error = m->err;
    }
  }

  rd_kafka_t* rk_ = nullptr;
};

std::map<std::string, std::string> by_key(const std::vector<KafkaMessage>& messages) {
  std::map<std::string, std::string> out;
  for (const auto& m : messages) out[m.key] = m.value;
  return out;
}

TEST(MockKafkaProcess, TakesMessagesAndFailsDeliveriesWhileItsBrokersAreDown) {
  MockKafkaProcess kafka;
  ASSERT_FALSE(kafka.bootstrap().empty());

  {
    Producer p(kafka.bootstrap(), {});
    for (int i = 0; i < 100; ++i) p.produce(test::cat("k", i), test::cat("v", i));
    ASSERT_TRUE(p.flush(30000));
    EXPECT_EQ(p.delivered, 100);
    EXPECT_EQ(p.failed, 0);
  }
  std::vector<KafkaMessage> read = read_topic(kafka.bootstrap(), kTopic, 100);
  ASSERT_EQ(read.size(), 100u);
  const auto first = by_key(read);
  ASSERT_EQ(first.size(), 100u) << "keys repeat";
  for (int i = 0; i < 100; ++i) {
    const auto it = first.find(test::cat("k", i));
    ASSERT_NE(it, first.end()) << "k" << i << " missing";
    EXPECT_EQ(it->second, test::cat("v", i));
  }
  std::set<std::pair<int32_t, int64_t>> positions;
  for (const auto& m : read) {
    EXPECT_GE(m.partition, 0);
    EXPECT_LT(m.partition, 3);  // qf-mock-kafka's default partition count
    EXPECT_TRUE(positions.emplace(m.partition, m.offset).second) << "offset read twice";
  }

  kafka.brokers_down();
  {
    Producer p(kafka.bootstrap(), {{"message.timeout.ms", "1500"}});
    p.produce("lost", "while down");
    ASSERT_TRUE(p.flush(15000)) << "no delivery report within 15 s";
    EXPECT_EQ(p.delivered, 0);
    EXPECT_EQ(p.failed, 1);
    EXPECT_EQ(p.last_error, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT) << rd_kafka_err2str(p.last_error);
  }

  kafka.brokers_up();
  {
    Producer p(kafka.bootstrap(), {});
    p.produce("after", "back up");
    ASSERT_TRUE(p.flush(30000));
    EXPECT_EQ(p.delivered, 1);
    EXPECT_EQ(p.failed, 0);
  }
  read = read_topic(kafka.bootstrap(), kTopic, 101);
  EXPECT_EQ(read.size(), 101u);
  EXPECT_EQ(read_topic_to_end(kafka.bootstrap(), kTopic).size(), 101u)
      << "read_topic_to_end reads every partition to its high watermark";
  const auto second = by_key(read);
  const auto after = second.find("after");
  ASSERT_NE(after, second.end()) << "the message produced after brokers_up() is missing";
  EXPECT_EQ(after->second, "back up");
  EXPECT_EQ(second.count("lost"), 0u) << "a message whose delivery failed is in the topic";
}

// The fault commands: a pushed request error fails exactly the next produce request, dropped
// connections are reconnected, a round-trip delay delays, and a bad command is an error.
TEST(MockKafkaProcess, InjectsRequestErrorsDroppedConnectionsAndDelays) {
  MockKafkaProcess kafka;
  Producer p(kafka.bootstrap(), {{"retries", "0"}});
  p.produce("warm", "up");
  ASSERT_TRUE(p.flush(30000));
  ASSERT_EQ(p.delivered, 1);

  kafka.push_request_errors(MockKafkaProcess::kApiProduce, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
  p.produce("refused", "by the injected error");
  ASSERT_TRUE(p.flush(30000));
  EXPECT_EQ(p.failed, 1);
  EXPECT_EQ(p.last_error, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) << rd_kafka_err2str(p.last_error);
  p.produce("next", "goes through");
  ASSERT_TRUE(p.flush(30000));
  EXPECT_EQ(p.delivered, 2);

  kafka.push_request_errors(MockKafkaProcess::kApiProduce, 5, 7);  // REQUEST_TIMED_OUT
  kafka.clear_request_errors(MockKafkaProcess::kApiProduce);
  kafka.drop_connections();
  p.produce("after", "a dropped connection");
  ASSERT_TRUE(p.flush(30000));
  EXPECT_EQ(p.delivered, 3);
  EXPECT_EQ(p.failed, 1) << "a cleared error still failed a request";

  kafka.set_rtt(400);
  const auto t0 = std::chrono::steady_clock::now();
  p.produce("slow", "answered 400 ms late");
  ASSERT_TRUE(p.flush(30000));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(300));
  kafka.set_rtt(0);
  EXPECT_EQ(p.delivered, 4);

  EXPECT_THROW(kafka.push_request_errors(5000, 1, 1), std::runtime_error);
  kafka.brokers_up();  // still answering after a refused command
}

TEST(MockKafkaProcess, DestructorEndsTheChildProcess) {
  pid_t pid;
  {
    MockKafkaProcess kafka(2);
    pid = kafka.pid();
    ASSERT_GT(pid, 0);
    EXPECT_EQ(kill(pid, 0), 0);
    EXPECT_NE(kafka.bootstrap().find(','), std::string::npos) << kafka.bootstrap();
  }
  // Reaped: the pid no longer names a child of ours.
  EXPECT_EQ(waitpid(pid, nullptr, WNOHANG), -1);
}

TEST(MockKafkaProcess, ABinaryThatIsNotThereIsAClearError) {
  const char* saved = std::getenv("QF_MOCK_KAFKA_BIN");
  const std::string restore = saved ? saved : "";
  setenv("QF_MOCK_KAFKA_BIN", "/nonexistent/qf-mock-kafka", 1);
  try {
    MockKafkaProcess kafka;
    ADD_FAILURE() << "started a binary that does not exist";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("QF_MOCK_KAFKA_BIN"), std::string::npos) << e.what();
  }
  if (saved)
    setenv("QF_MOCK_KAFKA_BIN", restore.c_str(), 1);
  else
    unsetenv("QF_MOCK_KAFKA_BIN");
}

TEST(JsonStringField, ReadsTopLevelStringFieldsOnly) {
  const std::string json = R"({"user_id":"u1","n":3,"inner":{"user_id":"x"},"esc":"a\"b"})";
  EXPECT_EQ(json_string_field(json, "user_id"), "u1");
  EXPECT_EQ(json_string_field(json, "esc"), "a\"b");
  EXPECT_EQ(json_string_field(json, "n"), "");
  EXPECT_EQ(json_string_field(json, "missing"), "");
  EXPECT_EQ(json_string_field("not json", "user_id"), "");
  EXPECT_EQ(json_string_field(R"(["user_id"])", "user_id"), "");
}

}  // namespace
}  // namespace quizflow::testing
