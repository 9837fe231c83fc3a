// Reads a topic back with a real librdkafka consumer (manual assignment, no consumer group), for
// tests that check what reached Kafka, e.g. a cluster hosted by MockKafkaProcess.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace quizflow::testing {

struct KafkaMessage {
  std::string key, value;  // a null key or value reads as ""
  int32_t partition;
  int64_t offset;
};

// Assigns every partition of `topic` (count from the cluster's metadata) at its beginning and
// consumes until at least `expect_at_least` messages arrived and then none for
// `idle_timeout_ms`, or until `total_timeout_ms` passed. Returns every message read, in
// arrival order (ordered by offset within a partition); consumer errors such as
// _PARTITION_EOF are skipped. Nothing is committed. Throws std::runtime_error when the
// consumer cannot be created or the topic's metadata cannot be had within the total timeout.
std::vector<KafkaMessage> read_topic(const std::string& bootstrap, const std::string& topic,
                                     int64_t expect_at_least, int idle_timeout_ms = 3000,
                                     int total_timeout_ms = 60000);

// Reads every message `topic` holds when it is called: the high watermark of each partition is
// taken first, then every partition is consumed from its beginning up to that mark (no idle
// timeout, so a slow fetch cannot cut the read short). Throws std::runtime_error when the
// consumer cannot be created, the metadata or a watermark cannot be had, or the marks are not
// reached within `timeout_ms`.
std::vector<KafkaMessage> read_topic_to_end(const std::string& bootstrap, const std::string& topic,
                                            int timeout_ms = 60000);

// Produces `messages` (key, value) to `topic` (acks=all, idempotent) and waits until every one
// is acknowledged. Throws std::runtime_error when one is not within `timeout_ms`.
void produce_all(const std::string& bootstrap, const std::string& topic,
                 const std::vector<std::pair<std::string, std::string>>& messages,
                 int timeout_ms = 60000);

// The top-level string field `name` of the JSON object `json`; "" when `json` is not a JSON
// object or the field is absent or not a string.
std::string json_string_field(const std::string& json, const char* name);

}  // namespace quizflow::testing
