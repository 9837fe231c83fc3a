#include "support/kafka_reader.h"

#include <librdkafka/rdkafka.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <stdexcept>
#include <thread>

namespace quizflow::testing {
namespace {

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::max<int64_t>(left, 0));
}

void set(rd_kafka_conf_t* conf, const char* name, const std::string& value) {
  char err[512];
  if (rd_kafka_conf_set(conf, name, value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string("read_topic: ") + name + ": " + err);
  }
}

// The partition count of `topic`, retried until it is known or `deadline` passes (a topic the
// producer has not created yet, a leader not elected yet).
int partition_count(rd_kafka_t* rk, const std::string& topic, Clock::time_point deadline) {
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  if (!rkt) throw std::runtime_error("read_topic: rd_kafka_topic_new(" + topic + ") failed");
  std::string last_error = "no metadata request finished";
  for (;;) {
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t err =
        rd_kafka_metadata(rk, 0, rkt, &md, std::max(100, std::min(5000, ms_left(deadline))));
    int count = 0;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      last_error = rd_kafka_err2str(err);
    } else {
      for (int i = 0; i < md->topic_cnt; ++i) {
        if (topic != md->topics[i].topic) continue;
        if (md->topics[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
          last_error = rd_kafka_err2str(md->topics[i].err);
        else
          count = md->topics[i].partition_cnt;
      }
      rd_kafka_metadata_destroy(md);
    }
    if (count > 0) {
      rd_kafka_topic_destroy(rkt);
      return count;
    }
    if (ms_left(deadline) == 0) {
      rd_kafka_topic_destroy(rkt);
      throw std::runtime_error("read_topic: no metadata for topic " + topic + ": " + last_error);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(200, ms_left(deadline))));
  }
}

}  // namespace

void produce_all(const std::string& bootstrap, const std::string& topic,
                 const std::vector<std::pair<std::string, std::string>>& messages, int timeout_ms) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", bootstrap);
  set(conf, "enable.idempotence", "true");
  set(conf, "acks", "all");
  set(conf, "linger.ms", "5");
  std::atomic<int64_t> failed{0};
  rd_kafka_conf_set_opaque(conf, &failed);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    if (m->err) static_cast<std::atomic<int64_t>*>(opaque)->fetch_add(1);
  });
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string("produce_all: rd_kafka_new: ") + err);
  }
  for (const auto& [key, value] : messages) {
    for (;;) {
      const rd_kafka_resp_err_t e = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_KEY(key.data(), key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_destroy(rk);
        throw std::runtime_error(std::string("produce_all: ") + rd_kafka_err2str(e));
      }
      rd_kafka_poll(rk, 10);
    }
    rd_kafka_poll(rk, 0);
  }
  const rd_kafka_resp_err_t flushed = rd_kafka_flush(rk, timeout_ms);
  rd_kafka_destroy(rk);
  if (flushed != RD_KAFKA_RESP_ERR_NO_ERROR || failed.load() > 0)
    throw std::runtime_error("produce_all: " + std::to_string(failed.load()) +
                             " messages not acknowledged");
}

namespace {

// A consumer that is never joined to its group (rd_kafka_assign needs a group handle, hence a
// group id) and commits nothing.
rd_kafka_t* new_reader(const std::string& bootstrap) {
  std::random_device rd;
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", bootstrap);
  set(conf, "group.id", "qf-read-topic-" + std::to_string(rd()) + std::to_string(rd()));
  set(conf, "enable.auto.commit", "false");
  set(conf, "enable.auto.offset.store", "false");
  set(conf, "log_level", "3");
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string("read_topic: rd_kafka_new: ") + err);
  }
  rd_kafka_poll_set_consumer(rk);
  return rk;
}

// Assigns partitions 0 … partitions-1 of `topic` at their beginning.
void assign_all(rd_kafka_t* rk, const std::string& topic, int partitions) {
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p)
    rd_kafka_topic_partition_list_add(assignment, topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  const rd_kafka_resp_err_t aerr = rd_kafka_assign(rk, assignment);
  rd_kafka_topic_partition_list_destroy(assignment);
  if (aerr != RD_KAFKA_RESP_ERR_NO_ERROR)
    throw std::runtime_error(std::string("read_topic: rd_kafka_assign: ") + rd_kafka_err2str(aerr));
}

KafkaMessage message_of(const rd_kafka_message_t* m) {
  KafkaMessage msg;
  if (m->key) msg.key.assign(static_cast<const char*>(m->key), m->key_len);
  if (m->payload) msg.value.assign(static_cast<const char*>(m->payload), m->len);
  msg.partition = m->partition;
  msg.offset = m->offset;
  return msg;
}

void close_reader(rd_kafka_t* rk) {
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
}

}  // namespace

std::vector<KafkaMessage> read_topic(const std::string& bootstrap, const std::string& topic,
                                     int64_t expect_at_least, int idle_timeout_ms,
                                     int total_timeout_ms) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(total_timeout_ms);
  rd_kafka_t* rk = new_reader(bootstrap);
  std::vector<KafkaMessage> out;
  try {
    assign_all(rk, topic, partition_count(rk, topic, deadline));
    auto last_message = start;  // the idle timeout counts from here
    for (;;) {
      const auto now = Clock::now();
      if (now >= deadline) break;
      if (static_cast<int64_t>(out.size()) >= expect_at_least &&
          now - last_message >= std::chrono::milliseconds(idle_timeout_ms))
        break;
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, std::min(100, ms_left(deadline)));
      if (!m) continue;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        out.push_back(message_of(m));
        last_message = Clock::now();
      }
      rd_kafka_message_destroy(m);
    }
  } catch (...) {
    close_reader(rk);
    throw;
  }
  close_reader(rk);
  return out;
}

std::vector<KafkaMessage> read_topic_to_end(const std::string& bootstrap, const std::string& topic,
                                            int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  rd_kafka_t* rk = new_reader(bootstrap);
  std::vector<KafkaMessage> out;
  // next[p]: the offset to read next; high[p]: where partition p ended when the read began.
  std::vector<int64_t> next, high;
  try {
    const int partitions = partition_count(rk, topic, deadline);
    next.assign(static_cast<size_t>(partitions), 0);
    high.assign(next.size(), 0);
    for (int p = 0; p < partitions; ++p) {
      int64_t lo = 0, hi = 0;
      const rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
          rk, topic.c_str(), p, &lo, &hi, std::max(100, std::min(10000, ms_left(deadline))));
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        throw std::runtime_error("read_topic_to_end: watermarks of " + topic + "[" +
                                 std::to_string(p) + "]: " + rd_kafka_err2str(e));
      next[static_cast<size_t>(p)] = lo;
      high[static_cast<size_t>(p)] = hi;
    }
    assign_all(rk, topic, partitions);
    const auto done = [&] {
      for (size_t p = 0; p < next.size(); ++p)
        if (next[p] < high[p]) return false;
      return true;
    };
    while (!done()) {
      if (ms_left(deadline) == 0) {
        std::string where;
        for (size_t p = 0; p < next.size(); ++p)
          where += " [" + std::to_string(p) + "] " + std::to_string(next[p]) + "/" +
                   std::to_string(high[p]);
        throw std::runtime_error("read_topic_to_end: " + topic +
                                 " not read to its end in time:" + where);
      }
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, std::min(100, ms_left(deadline)));
      if (!m) continue;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->partition >= 0 && m->partition < partitions) {
        out.push_back(message_of(m));
        auto& n = next[static_cast<size_t>(m->partition)];
        n = std::max(n, m->offset + 1);
      }
      rd_kafka_message_destroy(m);
    }
  } catch (...) {
    close_reader(rk);
    throw;
  }
  close_reader(rk);
  // Messages appended after the marks were taken are left out: the read is of "what was there".
  out.erase(std::remove_if(out.begin(), out.end(),
                           [&](const KafkaMessage& m) {
                             return m.offset >= high[static_cast<size_t>(m.partition)];
                           }),
            out.end());
  return out;
}

std::string json_string_field(const std::string& json, const char* name) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return "";
  const auto it = doc.FindMember(name);
  if (it == doc.MemberEnd() || !it->value.IsString()) return "";
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

}  // namespace quizflow::testing
