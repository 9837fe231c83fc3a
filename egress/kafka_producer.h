// Kafka implementation of the pipeline's NotificationSink (librdkafka 2.0 C API). With no
// brokers configured it hosts an in-process mock cluster (not durable) and produces there.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/notifier.h"

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace quizflow::egress {

struct KafkaOptions {
  std::string brokers;  // empty: start a mock cluster
  std::string topic = "quiz.notifications";
  std::vector<std::string> mock_topics;  // topics created in the mock cluster
  int64_t queue_max = 1000000;           // messages waiting in the producer
};

class KafkaProducer final : public NotificationSink {
 public:
  // Throws std::runtime_error when librdkafka refuses the configuration.
  explicit KafkaProducer(KafkaOptions options);
  ~KafkaProducer() override;  // flushes (bounded) and closes
  KafkaProducer(const KafkaProducer&) = delete;
  KafkaProducer& operator=(const KafkaProducer&) = delete;

  size_t publish(std::vector<Notification>& batch) override;
  void flush(int timeout_ms) override;
  SinkStats stats() const override;
  bool healthy(std::string& why) override;
  std::string bootstrap() const override { return bootstrap_; }

 private:
  static void on_delivery(rd_kafka_s* rk, const void* msg, void* opaque);

  KafkaOptions options_;
  rd_kafka_s* mock_host_ = nullptr;
  rd_kafka_mock_cluster_s* mock_ = nullptr;
  rd_kafka_s* rk_ = nullptr;
  std::string bootstrap_;
  std::atomic<int64_t> delivered_{0};
  std::atomic<int64_t> failed_{0};
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

}  // namespace quizflow::egress
