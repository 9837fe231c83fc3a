// What a Kafka source (ingress/kafka_source.h) and the engine tell each other: the offsets
// every batch transaction stores, and the source's figures (spec §6 `consumer`).
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "core/store.h"

namespace quizflow {

struct ConsumerStats {
  int64_t consumed = 0;                          // messages taken from quiz.answers
  int64_t dead_letters = 0;                      // messages sent to the dead-letter topic
  int64_t retried = 0;                           // messages submitted again after a storage failure
  int64_t in_engine = 0;                         // consumed, not yet settled
  int64_t paused = 0;                            // partitions paused for backpressure
  std::vector<std::pair<int32_t, int64_t>> lag;  // per assigned partition: messages behind
};

// Set on the engine before it starts (Engine::set_consumer).
struct ConsumerHooks {
  std::function<std::vector<PartitionOffset>()> offsets;
  std::function<ConsumerStats()> stats;
};

}  // namespace quizflow
