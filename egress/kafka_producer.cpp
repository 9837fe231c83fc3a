#include "egress/kafka_producer.h"

#include <librdkafka/rdkafka.h>
// rdkafka_mock.h must follow rdkafka.h.
#include <librdkafka/rdkafka_mock.h>
#include <spdlog/spdlog.h>

#include <stdexcept>

namespace quizflow::egress {
namespace {

void set(rd_kafka_conf_t* conf, const char* key, const std::string& value) {
  char err[512];
  if (rd_kafka_conf_set(conf, key, value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string("kafka config ") + key + ": " + err);
  }
}

// librdkafka's own log lines go through spdlog, in the configured format.
void log_to_spdlog(const rd_kafka_t* /*rk*/, int level, const char* fac, const char* buf) {
  const auto lvl = level <= 3   ? spdlog::level::err
                   : level <= 4 ? spdlog::level::warn
                   : level <= 6 ? spdlog::level::info
                                : spdlog::level::debug;
  spdlog::log(lvl, "kafka {}: {}", fac, buf);
}

}  // namespace

void KafkaProducer::on_delivery(rd_kafka_s* /*rk*/, const void* msg, void* opaque) {
  auto* self = static_cast<KafkaProducer*>(opaque);
  const auto* m = static_cast<const rd_kafka_message_t*>(msg);
  if (m->err) {
    self->failed_.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("notification delivery failed: {}", rd_kafka_err2str(m->err));
  } else {
    self->delivered_.fetch_add(1, std::memory_order_relaxed);
  }
}

KafkaProducer::KafkaProducer(KafkaOptions options) : options_(std::move(options)) {
  char err[512];
  bootstrap_ = options_.brokers;
  if (bootstrap_.empty()) {
    rd_kafka_conf_t* hc = rd_kafka_conf_new();
    set(hc, "log_level", "3");
    rd_kafka_conf_set_log_cb(hc, log_to_spdlog);
    mock_host_ = rd_kafka_new(RD_KAFKA_PRODUCER, hc, err, sizeof err);
    if (!mock_host_) throw std::runtime_error(std::string("kafka mock host: ") + err);
    mock_ = rd_kafka_mock_cluster_new(mock_host_, 1);
    if (!mock_) throw std::runtime_error("kafka: cannot start the mock cluster");
    bootstrap_ = rd_kafka_mock_cluster_bootstraps(mock_);
    for (const auto& t : options_.mock_topics) rd_kafka_mock_topic_create(mock_, t.c_str(), 3, 1);
    spdlog::warn(
        "KAFKA_BROKERS is not set: notifications go to an in-process mock Kafka cluster at {} "
        "and are NOT durable",
        bootstrap_);
  }
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", bootstrap_);
  set(conf, "acks", "all");
  set(conf, "enable.idempotence", "true");
  set(conf, "linger.ms", "5");
  set(conf, "queue.buffering.max.messages",
      std::to_string(std::min<int64_t>(options_.queue_max, 10000000)));
  set(conf, "message.timeout.ms", "300000");
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_log_cb(conf, log_to_spdlog);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t* rk, const rd_kafka_message_t* m, void* opaque) {
    on_delivery(rk, m, opaque);
  });
  rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk_) throw std::runtime_error(std::string("kafka producer: ") + err);
  poller_ = std::thread([this] {
    while (!stop_.load(std::memory_order_acquire)) rd_kafka_poll(rk_, 100);
  });
}

KafkaProducer::~KafkaProducer() {
  flush(5000);
  stop_.store(true, std::memory_order_release);
  if (poller_.joinable()) poller_.join();
  const int left = rd_kafka_outq_len(rk_);
  if (left > 0) spdlog::warn("closing the Kafka producer with {} notifications undelivered", left);
  rd_kafka_destroy(rk_);
  if (mock_) rd_kafka_mock_cluster_destroy(mock_);
  if (mock_host_) rd_kafka_destroy(mock_host_);
}

size_t KafkaProducer::publish(std::vector<Notification>& batch) {
  size_t refused = 0;
  for (auto& n : batch) {
    for (int attempt = 0;; ++attempt) {
      const rd_kafka_resp_err_t e = rd_kafka_producev(
          rk_, RD_KAFKA_V_TOPIC(options_.topic.c_str()), RD_KAFKA_V_KEY(n.key.data(), n.key.size()),
          RD_KAFKA_V_VALUE(n.value.data(), n.value.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && attempt < 50) {
        rd_kafka_poll(rk_, 10);  // the queue is bounded: wait briefly for deliveries
        continue;
      }
      ++refused;
      failed_.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("notification refused by the producer: {}", rd_kafka_err2str(e));
      break;
    }
  }
  return refused;
}

void KafkaProducer::flush(int timeout_ms) { rd_kafka_flush(rk_, timeout_ms); }

SinkStats KafkaProducer::stats() const {
  SinkStats s;
  s.queue_size = rd_kafka_outq_len(rk_);
  s.delivered = delivered_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  s.running = !stop_.load(std::memory_order_relaxed);
  return s;
}

bool KafkaProducer::healthy(std::string& why) {
  const struct rd_kafka_metadata* md = nullptr;
  const rd_kafka_resp_err_t e = rd_kafka_metadata(rk_, 0, nullptr, &md, 1000);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    why = std::string("kafka metadata: ") + rd_kafka_err2str(e);
    return false;
  }
  const bool ok = md->broker_cnt > 0;
  rd_kafka_metadata_destroy(md);
  if (!ok) why = "no Kafka broker reachable";
  return ok;
}

}  // namespace quizflow::egress
