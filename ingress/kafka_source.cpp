#include "ingress/kafka_source.h"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "core/log_rate.h"

namespace quizflow::ingress {

struct KafkaSource::Message {
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key, value;
};

// Messages submitted together as one request (item i = messages[i]).
struct KafkaSource::Chunk {
  std::vector<Message> messages;
};

namespace {

using Clock = std::chrono::steady_clock;

void set(rd_kafka_conf_t* conf, const std::string& name, const std::string& value) {
  char err[512];
  if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
    throw std::runtime_error("kafka consumer setting " + name + ": " + err);
}

void log_to_spdlog(const rd_kafka_t* /*rk*/, int level, const char* fac, const char* buf) {
  if (level <= 3) {
    spdlog::error("kafka consumer: {}: {}", fac, buf);
  } else if (level <= 4) {
    spdlog::warn("kafka consumer: {}: {}", fac, buf);
  }
}

struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    if (l) rd_kafka_topic_partition_list_destroy(l);
  }
};
using ListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;

bool cooperative(rd_kafka_t* rk) {
  const char* p = rd_kafka_rebalance_protocol(rk);
  return p && std::string_view(p) == "COOPERATIVE";
}

// Adds `parts` to the assignment or takes them out, as the group's protocol wants (incremental
// for cooperative-sticky, whole otherwise).
void change_assignment(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* parts, bool add) {
  if (!cooperative(rk)) {
    rd_kafka_assign(rk, add ? parts : nullptr);
    return;
  }
  rd_kafka_error_t* err =
      add ? rd_kafka_incremental_assign(rk, parts) : rd_kafka_incremental_unassign(rk, parts);
  if (err) {
    spdlog::error("kafka incremental {}: {}", add ? "assign" : "unassign",
                  rd_kafka_error_string(err));
    rd_kafka_error_destroy(err);
  }
}

// Commits settled offsets to Kafka (for lag tools; PostgreSQL holds ours).
void commit_offsets(rd_kafka_t* rk, const std::vector<PartitionOffset>& offsets, bool sync) {
  if (offsets.empty()) return;
  ListPtr l(rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size())));
  for (const auto& s : offsets)
    rd_kafka_topic_partition_list_add(l.get(), s.topic.c_str(), s.partition)->offset = s.next;
  rd_kafka_commit(rk, l.get(), sync ? 0 : 1);
}

}  // namespace

KafkaSourceOptions kafka_source_options(const Config& c, const std::string& bootstrap) {
  KafkaSourceOptions o;
  o.brokers = bootstrap;
  o.group_id = c.kafka_group_id;
  o.topic = c.topic_answers;
  o.dlq_topic = c.topic_dlq;
  o.session_timeout_ms = c.kafka_session_timeout_ms;
  o.commit_interval_ms = c.kafka_commit_interval_ms;
  o.max_chunk = static_cast<size_t>(std::max(1, c.http_max_batch));
  o.max_outstanding = c.max_in_flight_events / 2 > 0 ? c.max_in_flight_events / 2 : 50000;
  // Shutdown waits fit in the drain timeout (the watchdog ends the process after it).
  o.stop_wait_ms = std::max(100, c.drain_timeout_ms / 3);
  o.revoke_wait_ms = std::min(30000, std::max(1000, c.drain_timeout_ms));
  return o;
}

KafkaSource::KafkaSource(Engine& engine, Store& store, KafkaSourceOptions options)
    : engine_(engine), store_(store), options_(std::move(options)) {}

KafkaSource::~KafkaSource() { stop(); }

Status KafkaSource::start() try {
  // The dead-letter producer: acks=all, idempotent, as every producer of ours.
  rd_kafka_conf_t* pc = rd_kafka_conf_new();
  char err[512];
  try {
    set(pc, "bootstrap.servers", options_.brokers);
    set(pc, "enable.idempotence", "true");
    set(pc, "acks", "all");
    set(pc, "linger.ms", "5");
    set(pc, "log_level", "4");
  } catch (...) {
    rd_kafka_conf_destroy(pc);
    throw;
  }
  rd_kafka_conf_set_log_cb(pc, log_to_spdlog);
  rd_kafka_conf_set_opaque(pc, this);
  rd_kafka_conf_set_dr_msg_cb(pc, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    static_cast<KafkaSource*>(opaque)->on_dead_letter_report(m->err == 0, m->_private);
  });
  {
    WriterLock lock(producer_mu_);
    producer_ = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err);
    if (!producer_) {
      rd_kafka_conf_destroy(pc);
      return Status::unavailable(std::string("kafka dead-letter producer: ") + err);
    }
  }
  rd_kafka_conf_t* cc = rd_kafka_conf_new();
  try {
    set(cc, "bootstrap.servers", options_.brokers);
    set(cc, "group.id", options_.group_id);
    // Offsets are ours: stored with the batches in PostgreSQL, committed to Kafka by hand.
    set(cc, "enable.auto.commit", "false");
    set(cc, "enable.auto.offset.store", "false");
    set(cc, "auto.offset.reset", "earliest");
    set(cc, "partition.assignment.strategy", "cooperative-sticky");
    set(cc, "session.timeout.ms", std::to_string(options_.session_timeout_ms));
    set(cc, "heartbeat.interval.ms",
        std::to_string(std::max(100, options_.session_timeout_ms / 5)));
    set(cc, "log_level", "4");
    for (const auto& [k, v] : options_.properties) set(cc, k, v);
  } catch (...) {
    rd_kafka_conf_destroy(cc);
    throw;
  }
  rd_kafka_conf_set_log_cb(cc, log_to_spdlog);
  rd_kafka_conf_set_opaque(cc, this);
  rd_kafka_conf_set_rebalance_cb(cc, [](rd_kafka_t* /*rk*/, rd_kafka_resp_err_t e,
                                        rd_kafka_topic_partition_list_t* parts, void* opaque) {
    static_cast<KafkaSource*>(opaque)->on_rebalance(static_cast<int>(e), parts);
  });
  consumer_ = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof err);
  if (!consumer_) {
    rd_kafka_conf_destroy(cc);
    return Status::unavailable(std::string("kafka consumer: ") + err);
  }
  rd_kafka_poll_set_consumer(consumer_);
  ListPtr topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), options_.topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (const rd_kafka_resp_err_t e = rd_kafka_subscribe(consumer_, topics.get()); e != 0)
    return Status::unavailable(std::string("kafka subscribe: ") + rd_kafka_err2str(e));
  spdlog::info("consuming {} as group {} (offsets kept in PostgreSQL)", options_.topic,
               options_.group_id);
  poller_ = std::thread([this] { poll_loop(); });
  return Status();
} catch (const std::exception& e) {
  return Status::unavailable(e.what());
}

void KafkaSource::stop() {
  if (!consumer_) return;
  stop_.store(true);
  if (poller_.joinable()) poller_.join();
  {
    // What waits for a retry is let go: consumed again after the restart (a duplicate then).
    MutexLock lock(mu_);
    for (auto& c : retry_)
      for (const Message& m : c->messages) forget_offset(m.partition, m.offset);
    retry_.clear();
  }
  // The answers still in the engine: their offsets are stored with their batches.
  const auto deadline = Clock::now() + std::chrono::milliseconds(options_.stop_wait_ms);
  while (in_engine() > 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  commit_to_kafka(/*sync=*/true);
  rd_kafka_consumer_close(consumer_);  // leaves the group (a last, short, revocation runs here)
  rd_kafka_t* consumer = nullptr;
  {
    MutexLock lock(mu_);
    consumer = consumer_;
    consumer_ = nullptr;  // stats() and the hooks see no consumer from here on
  }
  rd_kafka_destroy(consumer);
  WriterLock lock(producer_mu_);
  rd_kafka_flush(producer_, 5000);  // dead letters in flight: their reports settle them
  rd_kafka_destroy(producer_);
  producer_ = nullptr;
}

void KafkaSource::poll_loop() {
  auto last_commit = Clock::now(), last_prune = Clock::now(), next_retry = Clock::now();
  while (!stop_.load()) {
    try {
      flow_control();
      if (Clock::now() >= next_retry) {
        std::vector<std::shared_ptr<Chunk>> again;
        {
          MutexLock lock(mu_);
          again.swap(retry_);
        }
        // A storage failure is retried no faster than every 200 ms.
        if (!again.empty()) next_retry = Clock::now() + std::chrono::milliseconds(200);
        for (auto& c : again) submit(c);
        produce_waiting_dead_letters();
      }
      auto chunk = std::make_shared<Chunk>();
      rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer_, 100);
      while (m) {
        if (m->err) {
          if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            static LogRate rate;
            if (int64_t more = 0; rate.allow(more))
              spdlog::warn("kafka consumer: {} ({} similar lines held back)",
                           rd_kafka_message_errstr(m), more);
          }
        } else {
          Message msg;
          msg.partition = m->partition;
          msg.offset = m->offset;
          if (m->key) msg.key.assign(static_cast<const char*>(m->key), m->key_len);
          if (m->payload) msg.value.assign(static_cast<const char*>(m->payload), m->len);
          chunk->messages.push_back(std::move(msg));
        }
        rd_kafka_message_destroy(m);
        if (chunk->messages.size() >= options_.max_chunk) break;
        m = rd_kafka_consumer_poll(consumer_, 0);
      }
      if (!chunk->messages.empty()) {
        // Only messages of partitions still assigned: a revocation may have run inside the
        // poll above, after some of its messages were fetched (the next owner reads them).
        auto mine = std::make_shared<Chunk>();
        {
          MutexLock lock(mu_);
          for (Message& msg : chunk->messages) {
            auto it = parts_.find(msg.partition);
            if (it == parts_.end()) continue;
            it->second.outstanding.insert(msg.offset);
            it->second.next = std::max(it->second.next, msg.offset + 1);
            mine->messages.push_back(std::move(msg));
          }
        }
        consumed_.fetch_add(static_cast<int64_t>(mine->messages.size()));
        if (!mine->messages.empty()) submit(mine);
      }
      if (Clock::now() - last_commit >= std::chrono::milliseconds(options_.commit_interval_ms)) {
        commit_to_kafka(/*sync=*/false);
        last_commit = Clock::now();
      }
      if (Clock::now() - last_prune >= std::chrono::seconds(10)) {
        // Every batch inserts its offsets; only the highest per partition matters.
        if (auto pruned = store_.prune_offsets(options_.group_id, options_.topic); !pruned.ok()) {
          static LogRate rate;
          if (int64_t more = 0; rate.allow(more))
            spdlog::warn("kafka source: pruning stored offsets failed: {} ({} held back)",
                         pruned.status().to_string(), more);
        }
        last_prune = Clock::now();
      }
      {
        ReaderLock lock(producer_mu_);
        if (producer_) rd_kafka_poll(producer_, 0);  // dead-letter delivery reports
      }
    } catch (...) {
      static LogRate rate;
      if (int64_t more = 0; rate.allow(more))
        spdlog::error(
            "kafka source: an unexpected error in the poll loop ({} similar lines held "
            "back)",
            more);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

void KafkaSource::forget_offset(int32_t partition, int64_t offset) {
  auto it = parts_.find(partition);
  if (it != parts_.end()) it->second.outstanding.erase(offset);
}

int64_t KafkaSource::in_engine() const {
  MutexLock lock(mu_);
  int64_t n = 0;
  for (const auto& [id, p] : parts_) n += static_cast<int64_t>(p.outstanding.size());
  return n;
}

void KafkaSource::retry_later(std::shared_ptr<Chunk> chunk) {
  MutexLock lock(mu_);
  auto mine = std::make_shared<Chunk>();
  for (Message& m : chunk->messages)
    if (parts_.count(m.partition)) mine->messages.push_back(std::move(m));
  if (mine->messages.empty()) return;
  retried_.fetch_add(static_cast<int64_t>(mine->messages.size()));
  retry_.push_back(std::move(mine));
}

void KafkaSource::submit(std::shared_ptr<Chunk> chunk) {
  // Each message is decoded with the engine's rules first: one that is not an answer is a dead
  // letter at once and does not spoil the request of its neighbours.
  auto good = std::make_shared<Chunk>();
  std::set<int64_t> quizzes;
  std::vector<std::pair<int32_t, int64_t>> seen;  // (partition, quiz) of each good message
  for (Message& m : chunk->messages) {
    const Item item = decode_answer(m.value);
    if (!item.event || item.verdict.status == ItemStatus::rejected) {
      dead_letter(m, item.verdict.code.empty() ? "malformed_json" : item.verdict.code,
                  item.verdict.message);
      continue;
    }
    quizzes.insert(item.event->quiz_id);
    seen.emplace_back(m.partition, item.event->quiz_id);
    good->messages.push_back(std::move(m));
  }
  if (good->messages.empty()) return;
  {
    MutexLock lock(mu_);
    for (const auto& [partition, quiz] : seen)
      if (auto it = parts_.find(partition); it != parts_.end()) it->second.quizzes.insert(quiz);
  }
  // A quiz created through another instance is loaded from PostgreSQL on its first answer;
  // when the database cannot be asked, the chunk waits (its answers are not refused).
  for (int64_t q : quizzes) {
    if (Status st = engine_.learn_quiz(q); !st.ok()) {
      static LogRate rate;
      if (int64_t more = 0; rate.allow(more))
        spdlog::warn("kafka source: quiz {} could not be looked up: {}; retried ({} held back)", q,
                     st.to_string(), more);
      retry_later(good);
      return;
    }
  }
  std::string body = "{\"answers\":[";
  for (size_t i = 0; i < good->messages.size(); ++i) {
    if (i) body += ',';
    body += good->messages[i].value;
  }
  body += "]}";
  const auto give_up = Clock::now() + std::chrono::seconds(1);
  for (;;) {
    const SubmitResult r = engine_.submit(body, [this, good](Request& req) noexcept {
      try {
        settle(good, req);
      } catch (...) {
        spdlog::error(
            "kafka source: settling a chunk failed; its messages are consumed again "
            "after a restart");
      }
    });
    if (r == SubmitResult::admitted) return;
    // Overloaded: wait a little, keeping order; then let the poll loop serve the group (a
    // rebalance must not wait for the engine) and try again later.
    if (r == SubmitResult::stopped || stop_.load() || Clock::now() >= give_up) {
      retry_later(good);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void KafkaSource::settle(const std::shared_ptr<Chunk>& chunk, Request& r) {
  std::vector<const Message*> done;
  if (r.error) {
    // Not from a well-formed chunk in principle. Several messages: each is tried alone, so
    // that the one at fault is found; one: a server error is retried, another is a dead letter.
    if (chunk->messages.size() > 1) {
      for (const Message& m : chunk->messages) {
        auto one = std::make_shared<Chunk>();
        one->messages.push_back(m);
        retry_later(one);
      }
      return;
    }
    if (r.error->http_status >= 500) {
      retry_later(chunk);
      return;
    }
    dead_letter(chunk->messages[0], r.error->code, r.error->message);
    return;
  }
  auto again = std::make_shared<Chunk>();
  for (size_t i = 0; i < r.items.size() && i < chunk->messages.size(); ++i) {
    const Verdict& v = r.items[i].verdict;
    const Message& m = chunk->messages[i];
    if (v.server_failure()) {
      again->messages.push_back(m);
    } else if (v.status == ItemStatus::rejected) {
      dead_letter(m, v.code, v.message);  // settles once the dead letter is in Kafka
    } else {
      done.push_back(&m);
    }
  }
  {
    MutexLock lock(mu_);
    for (const Message* m : done) forget_offset(m->partition, m->offset);
  }
  if (!again->messages.empty()) retry_later(again);
}

// A dead letter: the original message and why, on its way to the dead-letter topic. Its offset
// settles when Kafka acknowledged it; a failed one is produced again.
struct KafkaSource::DeadLetter {
  Message message;
  std::string code, why;
};

void KafkaSource::dead_letter(const Message& m, const std::string& code,
                              const std::string& message) {
  produce_dead_letter(std::make_unique<DeadLetter>(DeadLetter{m, code, message}));
}

void KafkaSource::produce_dead_letter(std::unique_ptr<DeadLetter> dl) {
  const Message& m = dl->message;
  const std::string partition = std::to_string(m.partition), offset = std::to_string(m.offset);
  ReaderLock lock(producer_mu_);
  if (!producer_) return;  // stopping: consumed again after the restart
  rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
  for (int attempt = 0; attempt < 100; ++attempt) {
    e = rd_kafka_producev(
        producer_, RD_KAFKA_V_TOPIC(options_.dlq_topic.c_str()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(m.key.data(), m.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(m.value.data()), m.value.size()),
        RD_KAFKA_V_HEADER("code", dl->code.data(), static_cast<ssize_t>(dl->code.size())),
        RD_KAFKA_V_HEADER("message", dl->why.data(), static_cast<ssize_t>(dl->why.size())),
        RD_KAFKA_V_HEADER("source_topic", options_.topic.data(),
                          static_cast<ssize_t>(options_.topic.size())),
        RD_KAFKA_V_HEADER("source_partition", partition.data(),
                          static_cast<ssize_t>(partition.size())),
        RD_KAFKA_V_HEADER("source_offset", offset.data(), static_cast<ssize_t>(offset.size())),
        RD_KAFKA_V_OPAQUE(dl.get()), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
    dl.release();  // its delivery report owns it
    return;
  }
  static LogRate rate;
  if (int64_t more = 0; rate.allow(more))
    spdlog::warn("dead letter of {}[{}]@{} not produced: {}; tried again ({} held back)",
                 options_.topic, m.partition, m.offset, rd_kafka_err2str(e), more);
  MutexLock ml(mu_);
  dead_letters_waiting_.push_back(std::move(dl));
}

void KafkaSource::on_dead_letter_report(bool ok, void* opaque) {
  std::unique_ptr<DeadLetter> dl(static_cast<DeadLetter*>(opaque));
  if (!dl) return;
  MutexLock lock(mu_);
  if (ok) {
    dead_lettered_.fetch_add(1);
    forget_offset(dl->message.partition, dl->message.offset);
  } else if (parts_.count(dl->message.partition)) {
    dead_letters_waiting_.push_back(std::move(dl));
  }
}

void KafkaSource::produce_waiting_dead_letters() {
  std::vector<std::unique_ptr<DeadLetter>> waiting;
  {
    MutexLock lock(mu_);
    waiting.swap(dead_letters_waiting_);
  }
  for (auto& dl : waiting) {
    bool mine = false;
    {
      MutexLock lock(mu_);
      mine = parts_.count(dl->message.partition) > 0;
    }
    if (mine) produce_dead_letter(std::move(dl));
  }
}

void KafkaSource::on_rebalance(int err, rd_kafka_topic_partition_list_s* parts) {
  try {
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) return assign(parts);
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) return revoke(parts);
    spdlog::error("kafka rebalance failed: {}",
                  rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(err)));
  } catch (...) {
    spdlog::error("kafka rebalance: an unexpected error; the assignment is still changed");
    change_assignment(consumer_, parts, err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS);
    return;
  }
  change_assignment(consumer_, parts, /*add=*/false);
}

void KafkaSource::assign(rd_kafka_topic_partition_list_s* parts) {
  // Start where the batches stored in PostgreSQL say; a partition never stored starts at the
  // offset committed to Kafka, else at the beginning.
  Result<std::map<int32_t, int64_t>> stored = Status::unavailable("not read");
  for (int attempt = 0; attempt < 50 && !stop_.load(); ++attempt) {
    stored = store_.load_offsets(options_.group_id, options_.topic);
    if (stored.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!stored.ok()) {
    spdlog::error("kafka: the stored offsets could not be read ({}); starting from Kafka's",
                  stored.status().to_string());
  }
  // Offsets committed to Kafka are settled ones too (committed every second, so often ahead of
  // those a batch stored): the later of the two is where to start.
  ListPtr committed(rd_kafka_topic_partition_list_copy(parts));
  const bool have_committed =
      rd_kafka_committed(consumer_, committed.get(), 5000) == RD_KAFKA_RESP_ERR_NO_ERROR;
  std::string names;
  {
    MutexLock lock(mu_);
    for (int i = 0; i < parts->cnt; ++i) {
      rd_kafka_topic_partition_t& tp = parts->elems[i];
      tp.offset = RD_KAFKA_OFFSET_INVALID;
      if (stored.ok()) {
        auto it = stored->find(tp.partition);
        if (it != stored->end()) tp.offset = it->second;
      }
      if (have_committed) {
        const rd_kafka_topic_partition_t* k = rd_kafka_topic_partition_list_find(
            committed.get(), options_.topic.c_str(), tp.partition);
        if (k && k->err == RD_KAFKA_RESP_ERR_NO_ERROR && k->offset >= 0)
          tp.offset = std::max(tp.offset, k->offset);
      }
      Partition p;
      p.start = tp.offset;
      parts_[tp.partition] = std::move(p);
      names += (names.empty() ? "" : ",") + std::to_string(tp.partition) + "@" +
               (tp.offset >= 0 ? std::to_string(tp.offset) : std::string("committed"));
    }
  }
  change_assignment(consumer_, parts, /*add=*/true);
  // librdkafka keeps a partition's pause across unassign and assign: new partitions follow the
  // current state (paused while the engine is full, resumed otherwise).
  bool paused = false;
  {
    MutexLock lock(mu_);
    paused = all_paused_;
    for (int i = 0; i < parts->cnt; ++i) parts_[parts->elems[i].partition].paused = paused;
  }
  if (paused) {
    rd_kafka_pause_partitions(consumer_, parts);
  } else {
    rd_kafka_resume_partitions(consumer_, parts);
  }
  spdlog::info("kafka: assigned {} partitions of {}: {}", parts->cnt, options_.topic, names);
}

void KafkaSource::revoke(rd_kafka_topic_partition_list_s* parts) {
  // Another instance takes these partitions once this returns: first the answers of theirs
  // still in the engine are committed (or given up), then their quizzes leave memory, so that
  // nothing here writes a quiz the other instance now owns.
  std::vector<int32_t> ids;
  for (int i = 0; i < parts->cnt; ++i) ids.push_back(parts->elems[i].partition);
  auto revoked = [&](int32_t p) { return std::find(ids.begin(), ids.end(), p) != ids.end(); };
  // Their waiting chunks and dead letters are let go (the next owner consumes them again);
  // done on every turn, since an engine thread may park a chunk while this waits.
  auto busy = [&] {
    MutexLock lock(mu_);
    std::vector<std::shared_ptr<Chunk>> keep;
    for (auto& c : retry_) {
      auto rest = std::make_shared<Chunk>();
      for (Message& m : c->messages) {
        if (revoked(m.partition)) {
          forget_offset(m.partition, m.offset);
        } else {
          rest->messages.push_back(std::move(m));
        }
      }
      if (!rest->messages.empty()) keep.push_back(std::move(rest));
    }
    retry_ = std::move(keep);
    std::vector<std::unique_ptr<DeadLetter>> letters;
    for (auto& dl : dead_letters_waiting_)
      if (!revoked(dl->message.partition)) letters.push_back(std::move(dl));
    dead_letters_waiting_ = std::move(letters);
    int64_t n = 0;
    for (int32_t p : ids) {
      auto it = parts_.find(p);
      if (it != parts_.end()) n += static_cast<int64_t>(it->second.outstanding.size());
    }
    return n;
  };
  // While stopping, stop() has waited already.
  const int wait_ms = stop_.load() ? 1000 : options_.revoke_wait_ms;
  const auto deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
  while (busy() > 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const int64_t left = busy();
  std::vector<int64_t> quizzes;
  std::vector<PartitionOffset> settled;
  {
    MutexLock lock(mu_);
    for (int32_t p : ids) {
      auto it = parts_.find(p);
      if (it == parts_.end()) continue;
      quizzes.insert(quizzes.end(), it->second.quizzes.begin(), it->second.quizzes.end());
      if (const int64_t s = settled_of(it->second); s >= 0)
        settled.push_back(PartitionOffset{options_.group_id, options_.topic, p, s});
    }
  }
  if (left > 0) {
    spdlog::error(
        "kafka: {} answers of revoked partitions still in the engine after {} ms; their quizzes "
        "stay in memory (restart this instance if the new owner writes them)",
        left, wait_ms);
  } else {
    engine_.forget_quizzes(quizzes);
  }
  commit_offsets(consumer_, settled, /*sync=*/true);
  {
    MutexLock lock(mu_);
    for (int32_t p : ids) parts_.erase(p);
  }
  change_assignment(consumer_, parts, /*add=*/false);
  spdlog::info("kafka: revoked {} partitions of {}", ids.size(), options_.topic);
}

void KafkaSource::flow_control() {
  const int64_t n = in_engine();
  bool pause = false, resume = false;
  {
    MutexLock lock(mu_);
    if (!all_paused_ && n >= options_.max_outstanding) pause = all_paused_ = true;
    if (all_paused_ && n <= options_.max_outstanding / 2) {
      resume = true;
      all_paused_ = false;
    }
    if (pause || resume)
      for (auto& [id, p] : parts_) p.paused = pause;
  }
  if (!pause && !resume) return;
  rd_kafka_topic_partition_list_t* raw = nullptr;
  if (rd_kafka_assignment(consumer_, &raw) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  ListPtr l(raw);
  if (pause) {
    rd_kafka_pause_partitions(consumer_, l.get());
    spdlog::info("kafka: {} answers in the engine: {} partitions paused", n, l->cnt);
  } else {
    rd_kafka_resume_partitions(consumer_, l.get());
    spdlog::info("kafka: backlog drained to {}: partitions resumed", n);
  }
}

int64_t KafkaSource::settled_of(const Partition& p) const {
  if (!p.outstanding.empty()) return *p.outstanding.begin();
  return p.next >= 0 ? p.next : p.start;
}

std::vector<PartitionOffset> KafkaSource::settled() const {
  MutexLock lock(mu_);
  std::vector<PartitionOffset> out;
  for (const auto& [id, p] : parts_)
    if (const int64_t s = settled_of(p); s >= 0)
      out.push_back(PartitionOffset{options_.group_id, options_.topic, id, s});
  return out;
}

void KafkaSource::commit_to_kafka(bool sync) {
  if (consumer_) commit_offsets(consumer_, settled(), sync);
}

ConsumerStats KafkaSource::stats() const {
  ConsumerStats s;
  s.consumed = consumed_.load();
  s.dead_letters = dead_lettered_.load();
  s.retried = retried_.load();
  MutexLock lock(mu_);
  for (const auto& [id, p] : parts_) s.in_engine += static_cast<int64_t>(p.outstanding.size());
  for (const auto& [id, p] : parts_) {
    int64_t lo = 0, hi = 0;
    int64_t lag = 0;
    if (consumer_ &&
        rd_kafka_get_watermark_offsets(consumer_, options_.topic.c_str(), id, &lo, &hi) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        hi >= 0) {
      const int64_t at = settled_of(p);
      lag = std::max<int64_t>(0, hi - std::max<int64_t>(at, lo));
    }
    s.lag.emplace_back(id, lag);
    if (p.paused) ++s.paused;
  }
  return s;
}

}  // namespace quizflow::ingress
