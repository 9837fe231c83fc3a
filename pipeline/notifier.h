// What the pipeline needs from the notification transport. egress/ implements it with librdkafka.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace quizflow {

struct Notification {
  std::string key;    // user_id as decimal text (partitioning key)
  std::string value;  // JSON body with a deterministic notification_id
};

struct SinkStats {
  int64_t queue_size = 0;  // handed to the producer, not yet acknowledged by the broker
  int64_t delivered = 0;
  int64_t failed = 0;
  bool running = false;
};

// Thread-safe.
class NotificationSink {
 public:
  virtual ~NotificationSink() = default;
  // Queues the messages for delivery; returns how many were refused (queue full or stopped).
  virtual size_t publish(std::vector<Notification>& batch) = 0;
  // Waits up to timeout_ms for queued messages to be delivered.
  virtual void flush(int timeout_ms) = 0;
  virtual SinkStats stats() const = 0;
  virtual bool healthy(std::string& why) = 0;
  // Bootstrap address of the broker(s) in use (for the log line and tests).
  virtual std::string bootstrap() const = 0;
};

}  // namespace quizflow
