#include "egress/kafka_producer.h"

#include <librdkafka/rdkafka.h>
// rdkafka_mock.h must follow rdkafka.h.
#include <librdkafka/rdkafka_mock.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "core/log_rate.h"

namespace quizflow::egress {
namespace {

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

void set(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
  char err[512];
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
    throw std::runtime_error("kafka config " + key + ": " + err);
}

// librdkafka's own log lines go through spdlog, in the configured format.
void log_to_spdlog(const rd_kafka_t* /*rk*/, int level, const char* fac, const char* buf) {
  const auto lvl = level <= 3   ? spdlog::level::err
                   : level <= 4 ? spdlog::level::warn
                   : level <= 6 ? spdlog::level::info
                                : spdlog::level::debug;
  spdlog::log(lvl, "kafka {}: {}", fac, buf);
}

// rd_kafka_new takes the configuration only when it succeeds.
rd_kafka_t* new_handle(rd_kafka_type_t type, ConfPtr conf, const char* what) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), err, sizeof err);
  if (!rk) throw std::runtime_error(std::string(what) + ": " + err);
  (void)conf.release();
  return rk;
}

}  // namespace

KafkaOptions kafka_options(const Config& c) {
  KafkaOptions o;
  o.brokers = c.kafka_brokers;
  o.topic = c.topic_notifications;
  o.mock_topics = {c.topic_answers, c.topic_notifications, c.topic_dlq};
  o.queue_max = c.notify_queue_max;
  o.backlog_max = c.notify_queue_max;
  o.message_timeout_ms = c.kafka_message_timeout_ms;
  return o;
}

void KafkaProducer::KafkaDeleter::operator()(rd_kafka_s* rk) const { rd_kafka_destroy(rk); }
void KafkaProducer::MockDeleter::operator()(rd_kafka_mock_cluster_s* m) const {
  rd_kafka_mock_cluster_destroy(m);
}

void KafkaProducer::on_delivery(rd_kafka_s* /*rk*/, const void* msg, void* opaque) {
  auto* self = static_cast<KafkaProducer*>(opaque);
  const auto* m = static_cast<const rd_kafka_message_t*>(msg);
  if (m->err) {
    self->failed_.fetch_add(1, std::memory_order_relaxed);
    static LogRate rate;
    if (int64_t more = 0; rate.allow(more))
      spdlog::warn("notification delivery failed: {} ({} more held back)", rd_kafka_err2str(m->err),
                   more);
  } else {
    self->delivered_.fetch_add(1, std::memory_order_relaxed);
  }
  if (m->_private) self->settle(static_cast<Group*>(m->_private), m->err == 0);
}

void KafkaProducer::settle(Group* g, bool ok) {
  if (!ok) g->failed.store(true, std::memory_order_relaxed);
  if (g->left.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  const bool delivered = !g->failed.load(std::memory_order_acquire);
  const int64_t id = g->outbox_id;
  delete g;
  MutexLock lock(listener_mu_);
  if (listener_) listener_(id, delivered);
}

void KafkaProducer::set_delivery_listener(DeliveryFn fn) {
  MutexLock lock(listener_mu_);
  listener_ = std::move(fn);
}

KafkaProducer::KafkaProducer(KafkaOptions options) : options_(std::move(options)) {
  bootstrap_ = options_.brokers;
  if (bootstrap_.empty()) {
    ConfPtr hc(rd_kafka_conf_new());
    set(hc.get(), "log_level", "3");
    rd_kafka_conf_set_log_cb(hc.get(), log_to_spdlog);
    mock_host_.reset(new_handle(RD_KAFKA_PRODUCER, std::move(hc), "kafka mock host"));
    mock_.reset(rd_kafka_mock_cluster_new(mock_host_.get(), 1));
    if (!mock_) throw std::runtime_error("kafka: cannot start the mock cluster");
    bootstrap_ = rd_kafka_mock_cluster_bootstraps(mock_.get());
    for (const auto& t : options_.mock_topics)
      rd_kafka_mock_topic_create(mock_.get(), t.c_str(), 3, 1);
  }
  ConfPtr conf(rd_kafka_conf_new());
  set(conf.get(), "bootstrap.servers", bootstrap_);
  set(conf.get(), "acks", "all");
  set(conf.get(), "enable.idempotence", "true");
  set(conf.get(), "linger.ms", "5");
  set(conf.get(), "queue.buffering.max.messages",
      std::to_string(std::clamp<int64_t>(options_.queue_max, 1, 10000000)));
  set(conf.get(), "message.timeout.ms", std::to_string(options_.message_timeout_ms));
  for (const auto& [k, v] : options_.properties) set(conf.get(), k, v);
  rd_kafka_conf_set_opaque(conf.get(), this);
  rd_kafka_conf_set_log_cb(conf.get(), log_to_spdlog);
  rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t* rk, const rd_kafka_message_t* m,
                                             void* opaque) { on_delivery(rk, m, opaque); });
  rk_.reset(new_handle(RD_KAFKA_PRODUCER, std::move(conf), "kafka producer"));
  poller_ = std::thread([this] { poll_loop(); });
  if (mock_)
    spdlog::warn(
        "KAFKA_BROKERS is not set: notifications go to an in-process mock Kafka cluster at {} "
        "and are NOT durable",
        bootstrap_);
}

KafkaProducer::~KafkaProducer() {
  flush(5000);
  stop_.store(true, std::memory_order_release);
  if (poller_.joinable()) poller_.join();
  const int64_t left = rd_kafka_outq_len(rk_.get()) + backlog_size_.load();
  if (left > 0) spdlog::warn("closing the Kafka producer with {} notifications undelivered", left);
  // What is left is reported failed (its outbox rows stay unsent, for the next run's relay).
  rd_kafka_purge(rk_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll(rk_.get(), 0);
  MutexLock lock(mu_);
  for (Pending& p : backlog_)
    if (p.group) settle(p.group, false);
  backlog_.clear();
}

KafkaProducer::Produced KafkaProducer::produce(const Notification& n, Group* g) {
  const rd_kafka_resp_err_t e = rd_kafka_producev(
      rk_.get(), RD_KAFKA_V_TOPIC(options_.topic.c_str()),
      RD_KAFKA_V_KEY(n.key.data(), n.key.size()),
      // RD_KAFKA_MSG_F_COPY: librdkafka copies the value and never writes through the pointer.
      RD_KAFKA_V_VALUE(const_cast<char*>(n.value.data()), n.value.size()),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(g), RD_KAFKA_V_END);
  if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) return Produced::full;
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    failed_.fetch_add(1, std::memory_order_relaxed);
    static LogRate rate;
    if (int64_t more = 0; rate.allow(more))
      spdlog::warn("notification refused by the producer: {} ({} more held back)",
                   rd_kafka_err2str(e), more);
    if (g) settle(g, false);
    return Produced::refused;
  }
  return Produced::queued;
}

size_t KafkaProducer::publish(std::vector<Notification>& batch, int64_t outbox_id) {
  Group* group = nullptr;
  if (outbox_id != 0) {
    if (batch.empty()) {
      MutexLock lock(listener_mu_);
      if (listener_) listener_(outbox_id, true);
      return 0;
    }
    group = new Group;
    group->outbox_id = outbox_id;
    group->left.store(static_cast<int64_t>(batch.size()), std::memory_order_relaxed);
  }
  size_t refused = 0;
  MutexLock lock(mu_);
  size_t i = 0;
  // Straight to librdkafka while nothing waits before them (per-key order is kept).
  if (backlog_.empty()) {
    for (; i < batch.size(); ++i) {
      const Produced r = produce(batch[i], group);
      if (r == Produced::full) break;
      if (r == Produced::refused) ++refused;  // counted in failed_ by produce()
    }
  }
  size_t over_bound = 0;
  for (; i < batch.size(); ++i) {
    if (static_cast<int64_t>(backlog_.size()) >= options_.backlog_max) {
      ++over_bound;
      if (group) settle(group, false);
      continue;
    }
    backlog_.push_back(Pending{std::move(batch[i]), group});
  }
  backlog_size_.store(static_cast<int64_t>(backlog_.size()), std::memory_order_relaxed);
  if (over_bound > 0) {
    failed_.fetch_add(static_cast<int64_t>(over_bound), std::memory_order_relaxed);
    static LogRate rate;
    if (int64_t more = 0; rate.allow(more))
      spdlog::warn("producer backlog full ({} messages): {} notifications refused ({} more lines)",
                   options_.backlog_max, over_bound, more);
  }
  return refused + over_bound;
}

void KafkaProducer::drain_backlog() {
  // A message librdkafka refuses for good is counted in failed_ by produce() and dropped.
  while (!backlog_.empty() &&
         produce(backlog_.front().message, backlog_.front().group) != Produced::full)
    backlog_.pop_front();
  backlog_size_.store(static_cast<int64_t>(backlog_.size()), std::memory_order_relaxed);
}

void KafkaProducer::poll_loop() {
  // rd_kafka_poll returns as soon as delivery reports arrive (they make room in librdkafka's
  // queue), so a waiting backlog is retried right after them. While the backlog does not move
  // (brokers down) the wait doubles from 5 ms up to 100 ms: no spinning through an outage.
  int wait_ms = 5;
  while (!stop_.load(std::memory_order_acquire)) {
    const int64_t before = backlog_size_.load(std::memory_order_relaxed);
    rd_kafka_poll(rk_.get(), before > 0 ? wait_ms : 100);
    if (before == 0) continue;
    MutexLock lock(mu_);
    drain_backlog();
    wait_ms =
        backlog_size_.load(std::memory_order_relaxed) < before ? 5 : std::min(100, wait_ms * 2);
  }
}

void KafkaProducer::flush(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  // The backlog goes to librdkafka first (the poller hands it over as room appears).
  while (backlog_size_.load(std::memory_order_relaxed) > 0 &&
         std::chrono::steady_clock::now() < deadline && !stop_.load())
    rd_kafka_poll(rk_.get(), 5);
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
  rd_kafka_flush(rk_.get(), static_cast<int>(std::max<int64_t>(0, left)));
}

SinkStats KafkaProducer::stats() const {
  SinkStats s;
  s.queue_size = rd_kafka_outq_len(rk_.get()) + backlog_size_.load(std::memory_order_relaxed);
  s.delivered = delivered_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  s.running = !stop_.load(std::memory_order_relaxed);
  return s;
}

Status KafkaProducer::health() {
  const struct rd_kafka_metadata* md = nullptr;
  const rd_kafka_resp_err_t e = rd_kafka_metadata(rk_.get(), 0, nullptr, &md, 1000);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return Status::unavailable(std::string("kafka metadata: ") + rd_kafka_err2str(e));
  const bool ok = md->broker_cnt > 0;
  rd_kafka_metadata_destroy(md);
  if (!ok) return Status::unavailable("no Kafka broker reachable");
  return Status();
}

}  // namespace quizflow::egress
