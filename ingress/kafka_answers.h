// POST /v1/answers in Kafka mode (QUIZFLOW_INGRESS_MODE=kafka): each answer that passes the
// schema is produced to quiz.answers (key quiz_id, acks=all, idempotent) and the request is
// answered once Kafka acknowledged every one — "durable in Kafka, scored asynchronously" by
// the engines consuming the topic. An answer Kafka did not acknowledge is `storage_unavailable`
// (the request gets 503 + Retry-After; a resend is a duplicate, never counted twice).
#pragma once

#include <atomic>
#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "core/mutex.h"
#include "core/request.h"
#include "core/status.h"
#include "pipeline/engine.h"

struct rd_kafka_s;

namespace quizflow::ingress {

class KafkaAnswers {
 public:
  // `timeout_ms`: how long an answer may wait for Kafka's acknowledgement.
  KafkaAnswers(std::string brokers, std::string topic, size_t max_batch, int timeout_ms);
  ~KafkaAnswers();  // flushes (bounded) and closes
  KafkaAnswers(const KafkaAnswers&) = delete;
  KafkaAnswers& operator=(const KafkaAnswers&) = delete;

  Status start();
  // As Engine::submit: `done` runs exactly once, on the producer's thread, when every item has
  // its verdict (or the request failed as a whole). `stopped` after stop().
  SubmitResult submit(std::string body, Request::DoneFn done);
  void stop();

  struct Pending;  // one answer waiting for Kafka (kafka_answers.cpp)

 private:
  void expire() QF_EXCLUDES(mu_);
  std::string brokers_, topic_;
  size_t max_batch_;
  int timeout_ms_;
  rd_kafka_s* producer_ = nullptr;
  std::thread poller_;
  std::atomic<bool> stop_{false};
  SharedMutex life_mu_;  // submit() (shared) against stop() destroying the producer
  Mutex mu_;
  std::deque<std::shared_ptr<Pending>> waiting_ QF_GUARDED_BY(mu_);  // by deadline
};

}  // namespace quizflow::ingress
