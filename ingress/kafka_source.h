// Kafka source (spec §3 Kafka, §7 QUIZFLOW_CONSUME_ANSWERS): a consumer group on `quiz.answers`
// feeding chunks of answers into the same engine as HTTP. Its progress per partition — the
// offset below which every message is settled (stored, refused or sent to the dead-letter
// topic) — is stored in PostgreSQL by every batch transaction (Engine::set_offset_source), read
// back on assignment, and committed to Kafka as well (for lag tools). A message redelivered
// after a crash or a rebalance is a duplicate in the event log, never counted twice.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/consumer.h"
#include "core/mutex.h"
#include "core/status.h"
#include "core/store.h"
#include "pipeline/engine.h"

struct rd_kafka_s;
struct rd_kafka_topic_partition_list_s;

namespace quizflow::ingress {

struct KafkaSourceOptions {
  std::string brokers;
  std::string group_id = "quizflow";
  std::string topic = "quiz.answers";
  std::string dlq_topic = "quiz.answers.dlq";
  int session_timeout_ms = 10000;
  size_t max_chunk = 1000;          // messages per submitted request (≤ http.max_batch)
  int64_t max_outstanding = 50000;  // messages in the engine before partitions are paused
  int revoke_wait_ms = 30000;       // how long a revocation waits for its partitions' work
  int stop_wait_ms = 5000;          // how long stop() waits for the answers in the engine
  int commit_interval_ms = 1000;    // settled offsets committed to Kafka this often
  // Extra librdkafka consumer properties (security settings, tests), applied last.
  std::vector<std::pair<std::string, std::string>> properties;
};

KafkaSourceOptions kafka_source_options(const Config& c, const std::string& bootstrap);

class KafkaSource {
 public:
  KafkaSource(Engine& engine, Store& store, KafkaSourceOptions options);
  ~KafkaSource();  // stop()
  KafkaSource(const KafkaSource&) = delete;
  KafkaSource& operator=(const KafkaSource&) = delete;

  // Creates the consumer and the dead-letter producer, joins the group and starts polling.
  Status start();
  // Stops polling, waits (bounded) for the answers in the engine, commits the offsets and
  // leaves the group. Idempotent. Call before the engine stops.
  void stop();

  // Per assigned partition, the offset below which everything is settled (for the batch
  // transactions; Engine::set_offset_source).
  std::vector<PartitionOffset> settled() const QF_EXCLUDES(mu_);
  ConsumerStats stats() const QF_EXCLUDES(mu_);

 private:
  struct Partition {
    std::set<int64_t> outstanding;  // offsets handed to the engine or the retry queue
    int64_t next = -1;              // offset after the last one consumed (-1: none yet)
    int64_t start = -1;             // where consumption started (assignment)
    std::set<int64_t> quizzes;      // quizzes seen on it (dropped from memory on revoke)
    bool paused = false;
  };
  struct Message;  // one consumed message (kafka_source.cpp)
  struct Chunk;
  struct DeadLetter;

  void poll_loop();
  void on_rebalance(int err, rd_kafka_topic_partition_list_s* parts);
  void assign(rd_kafka_topic_partition_list_s* parts);
  void revoke(rd_kafka_topic_partition_list_s* parts);
  void submit(std::shared_ptr<Chunk> chunk);
  void settle(const std::shared_ptr<Chunk>& chunk, Request& r);
  // Puts a chunk's messages of partitions still assigned on the retry list.
  void retry_later(std::shared_ptr<Chunk> chunk) QF_EXCLUDES(mu_);
  void dead_letter(const Message& m, const std::string& code, const std::string& message);
  void produce_dead_letter(std::unique_ptr<DeadLetter> dl) QF_EXCLUDES(mu_, producer_mu_);
  void on_dead_letter_report(bool ok, void* opaque) QF_EXCLUDES(mu_);
  void produce_waiting_dead_letters() QF_EXCLUDES(mu_);
  void forget_offset(int32_t partition, int64_t offset) QF_REQUIRES(mu_);
  int64_t in_engine() const QF_EXCLUDES(mu_);  // offsets consumed, not yet settled
  void flow_control() QF_EXCLUDES(mu_);
  void commit_to_kafka(bool sync) QF_EXCLUDES(mu_);
  int64_t settled_of(const Partition& p) const;

  Engine& engine_;
  Store& store_;
  KafkaSourceOptions options_;
  rd_kafka_s* consumer_ = nullptr;  // set to null under mu_ by stop()
  // Dead letters: produced by engine threads too; destroyed by stop() under the writer lock.
  mutable SharedMutex producer_mu_;
  rd_kafka_s* producer_ QF_GUARDED_BY(producer_mu_) = nullptr;
  std::thread poller_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> dead_lettered_{0}, consumed_{0}, retried_{0};

  mutable Mutex mu_;
  std::map<int32_t, Partition> parts_ QF_GUARDED_BY(mu_);
  // Chunks whose items the engine could not store now (storage down): submitted again later.
  std::vector<std::shared_ptr<Chunk>> retry_ QF_GUARDED_BY(mu_);
  // Dead letters Kafka did not take yet (produced again by the poll loop).
  std::vector<std::unique_ptr<DeadLetter>> dead_letters_waiting_ QF_GUARDED_BY(mu_);
  bool all_paused_ QF_GUARDED_BY(mu_) = false;
};

}  // namespace quizflow::ingress
