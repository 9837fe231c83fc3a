#include "ingress/kafka_answers.h"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>

#include "core/log_rate.h"
#include "ingress/json_out.h"

namespace quizflow::ingress {
namespace {}  // namespace

// One answer waiting for its delivery report, or its deadline: whichever comes first resolves
// the item (the other finds it done).
struct KafkaAnswers::Pending {
  std::shared_ptr<Request> request;
  size_t item = 0;
  std::chrono::steady_clock::time_point deadline;
  std::atomic<bool> done{false};
  void resolve(Verdict v) {
    if (!done.exchange(true)) request->resolve(item, std::move(v));
  }
};

namespace {

Verdict not_acknowledged(const std::string& why) {
  return Verdict::reject(kStorageUnavailable,
                         "the answer was not acknowledged by Kafka (" + why + "); retry");
}

void on_delivery(rd_kafka_t* /*rk*/, const rd_kafka_message_t* m, void* /*opaque*/) {
  std::unique_ptr<std::shared_ptr<KafkaAnswers::Pending>> p(
      static_cast<std::shared_ptr<KafkaAnswers::Pending>*>(m->_private));
  if (!p) return;
  if (m->err) {
    static LogRate rate;
    if (int64_t more = 0; rate.allow(more))
      spdlog::warn("kafka mode: an answer was not acknowledged: {} ({} similar lines held back)",
                   rd_kafka_err2str(m->err), more);
    (*p)->resolve(not_acknowledged(rd_kafka_err2str(m->err)));
  } else {
    (*p)->resolve(Verdict{ItemStatus::accepted, "", "", ""});
  }
}

void log_to_spdlog(const rd_kafka_t* /*rk*/, int level, const char* fac, const char* buf) {
  if (level <= 3) {
    spdlog::error("kafka answers producer: {}: {}", fac, buf);
  } else if (level <= 4) {
    spdlog::warn("kafka answers producer: {}: {}", fac, buf);
  }
}

}  // namespace

KafkaAnswers::KafkaAnswers(std::string brokers, std::string topic, size_t max_batch, int timeout_ms)
    : brokers_(std::move(brokers)),
      topic_(std::move(topic)),
      max_batch_(max_batch),
      timeout_ms_(timeout_ms) {}

KafkaAnswers::~KafkaAnswers() { stop(); }

Status KafkaAnswers::start() {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  const std::pair<const char*, std::string> settings[] = {
      {"bootstrap.servers", brokers_},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"linger.ms", "1"},
      {"message.timeout.ms", std::to_string(timeout_ms_)},
      {"log_level", "4"}};
  for (const auto& [k, v] : settings) {
    if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return Status::unavailable(std::string("kafka answers producer: ") + k + ": " + err);
    }
  }
  rd_kafka_conf_set_log_cb(conf, log_to_spdlog);
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  producer_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!producer_) {
    rd_kafka_conf_destroy(conf);
    return Status::unavailable(std::string("kafka answers producer: ") + err);
  }
  poller_ = std::thread([this] {
    while (!stop_.load()) {
      rd_kafka_poll(producer_, 50);  // delivery reports answer requests
      expire();
    }
  });
  spdlog::info("kafka mode: POST /v1/answers produces to {} and answers once acknowledged", topic_);
  return Status();
}

SubmitResult KafkaAnswers::submit(std::string body, Request::DoneFn done) {
  ReaderLock life(life_mu_);  // stop() destroys the producer under the writer lock
  if (stop_.load() || !producer_) return SubmitResult::stopped;
  auto r = std::make_shared<Request>(std::move(body), std::move(done));
  const size_t ok = decode_request(*r, max_batch_);
  if (r->error) {
    r->fail(*r->error);
    return SubmitResult::admitted;
  }
  r->arm(ok);
  for (size_t i = 0; i < r->items.size(); ++i) {
    Item& item = r->items[i];
    if (!item.event || item.verdict.status != ItemStatus::pending) continue;
    const std::string value = answer_json(*item.event);
    const std::string key = std::to_string(item.event->quiz_id);
    auto state = std::make_shared<Pending>();
    state->request = r;
    state->item = i;
    state->deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
    {
      MutexLock lock(mu_);
      waiting_.push_back(state);
    }
    auto pending = std::make_unique<std::shared_ptr<Pending>>(state);
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int attempt = 0; attempt < 100; ++attempt) {
      e = rd_kafka_producev(producer_, RD_KAFKA_V_TOPIC(topic_.c_str()),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_KEY(key.data(), key.size()),
                            RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                            RD_KAFKA_V_OPAQUE(pending.get()), RD_KAFKA_V_END);
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
      pending.release();  // the delivery report owns it now
    } else {
      state->resolve(not_acknowledged(rd_kafka_err2str(e)));
    }
  }
  return SubmitResult::admitted;
}

// Answers whose acknowledgement did not come in time are answered `storage_unavailable` (the
// request gets 503 before Pistache's own timeout; a late delivery makes a resend a duplicate).
void KafkaAnswers::expire() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<Pending>> late;
  {
    MutexLock lock(mu_);
    while (!waiting_.empty() &&
           (waiting_.front()->done.load() || waiting_.front()->deadline <= now)) {
      if (!waiting_.front()->done.load()) late.push_back(waiting_.front());
      waiting_.pop_front();
    }
  }
  for (auto& p : late) p->resolve(not_acknowledged("no acknowledgement in time"));
}

void KafkaAnswers::stop() {
  if (!producer_) return;
  stop_.store(true);  // submit() refuses from here on
  if (poller_.joinable()) poller_.join();
  WriterLock life(life_mu_);  // no submit() is inside any more
  rd_kafka_flush(producer_, timeout_ms_);
  rd_kafka_purge(producer_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll(producer_, 0);  // the purged ones are answered (not acknowledged)
  rd_kafka_destroy(producer_);
  producer_ = nullptr;
  std::deque<std::shared_ptr<Pending>> left;
  {
    MutexLock lock(mu_);
    left.swap(waiting_);
  }
  for (auto& p : left) p->resolve(not_acknowledged("the server is stopping"));
}

}  // namespace quizflow::ingress
