// Kafka implementation of the engine's NotificationSink (librdkafka 2.0 C API). With no
// brokers configured it hosts an in-process mock cluster (not durable) and produces there.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/mutex.h"
#include "core/notifier.h"

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace quizflow::egress {

struct KafkaOptions {
  std::string brokers;  // empty: start a mock cluster
  std::string topic = "quiz.notifications";
  std::vector<std::string> mock_topics;  // topics created in the mock cluster
  int64_t queue_max = 1000000;           // messages waiting in librdkafka's queue
  // Messages held by the producer while librdkafka's queue is full (retried by its poller
  // thread); beyond this publish() refuses.
  int64_t backlog_max = 1000000;
  int message_timeout_ms = 300000;  // a message not delivered by then is reported failed
  // Extra librdkafka producer properties (e.g. security settings), applied last.
  std::vector<std::pair<std::string, std::string>> properties;
};

// The producer settings of the configuration (KAFKA_BROKERS, topics, the queue bound); the mock
// cluster, when there is one, gets every configured topic.
KafkaOptions kafka_options(const Config& c);

class KafkaProducer final : public NotificationSink {
 public:
  // Throws std::runtime_error when librdkafka refuses the configuration; whatever it had
  // created by then is destroyed.
  explicit KafkaProducer(KafkaOptions options);
  ~KafkaProducer() override;  // flushes (bounded) and closes
  KafkaProducer(const KafkaProducer&) = delete;
  KafkaProducer& operator=(const KafkaProducer&) = delete;

  // Never waits: what librdkafka's full queue cannot take now waits in the backlog, in order,
  // and the poller thread hands it over as deliveries make room.
  void set_delivery_listener(DeliveryFn fn) override QF_EXCLUDES(listener_mu_);
  size_t publish(std::vector<Notification>& batch, int64_t outbox_id = 0) override QF_EXCLUDES(mu_);
  void flush(int timeout_ms) override QF_EXCLUDES(mu_);
  SinkStats stats() const override QF_EXCLUDES(mu_);
  Status health() override;
  std::string bootstrap() const override { return bootstrap_; }

 private:
  struct KafkaDeleter {
    void operator()(rd_kafka_s* rk) const;
  };
  struct MockDeleter {
    void operator()(rd_kafka_mock_cluster_s* m) const;
  };
  // The messages of one publish() with an outbox id: reported to the listener when the last
  // of them has its delivery report.
  struct Group {
    int64_t outbox_id = 0;
    std::atomic<int64_t> left{0};
    std::atomic<bool> failed{false};
  };
  struct Pending {
    Notification message;
    Group* group = nullptr;
  };
  static void on_delivery(rd_kafka_s* rk, const void* msg, void* opaque);
  // One message of `g` ended (delivered when ok); the last one reports the group.
  void settle(Group* g, bool ok) QF_EXCLUDES(listener_mu_);
  enum class Produced { queued, full, refused };
  // Hands one message to librdkafka: queued; full (its queue is: retry later); or refused for
  // good (counted in failed_, logged, and settled as failed).
  Produced produce(const Notification& n, Group* g);
  // Hands the backlog to librdkafka until its queue is full again.
  void drain_backlog() QF_REQUIRES(mu_);
  void poll_loop();

  KafkaOptions options_;
  // Destroyed in reverse order: the producer, then the mock cluster, then its host.
  std::unique_ptr<rd_kafka_s, KafkaDeleter> mock_host_;
  std::unique_ptr<rd_kafka_mock_cluster_s, MockDeleter> mock_;
  std::unique_ptr<rd_kafka_s, KafkaDeleter> rk_;
  std::string bootstrap_;
  std::atomic<int64_t> delivered_{0};
  std::atomic<int64_t> failed_{0};
  mutable Mutex mu_;
  std::deque<Pending> backlog_ QF_GUARDED_BY(mu_);
  mutable Mutex listener_mu_;
  DeliveryFn listener_ QF_GUARDED_BY(listener_mu_);
  std::atomic<int64_t> backlog_size_{0};
  std::atomic<bool> stop_{false};
  std::thread poller_;  // started last in the constructor
};

}  // namespace quizflow::egress
