// What the pipeline needs from the notification transport. egress/ implements it with librdkafka.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace quizflow {

struct Notification {
  std::string key;    // user_id as decimal text (partitioning key)
  std::string value;  // JSON body with a deterministic notification_id
};

// Notifications stored as one row of the outbox (spec §6 `outbox`): written in the transaction
// that caused them, relayed, and deleted once every message of the row was delivered.
struct OutboxGroup {
  int64_t outbox_id = 0;  // 0: not stored (published from memory, nothing to report)
  std::vector<Notification> messages;
};

// At most this many messages share one outbox row.
inline constexpr size_t kOutboxGroupMax = 5000;

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
  // Called once per published group with a non-zero outbox_id, when every message of it has a
  // delivery report: ok when all were delivered (a refused message counts as not delivered).
  // Runs on a transport thread; must not block long or throw.
  using DeliveryFn = std::function<void(int64_t outbox_id, bool ok)>;
  // Set before the first publish.
  virtual void set_delivery_listener(DeliveryFn fn) = 0;

  // Queues the messages for delivery and returns at once, never waiting for room: a full
  // transport queue is the sink's own to retry. Returns how many were refused (over the sink's
  // bound, or stopped); refused messages are counted as failed. `outbox_id` (when not 0) is
  // reported to the delivery listener once the whole batch is reported.
  virtual size_t publish(std::vector<Notification>& batch, int64_t outbox_id = 0) = 0;
  // Waits up to timeout_ms for queued messages to be delivered.
  virtual void flush(int timeout_ms) = 0;
  virtual SinkStats stats() const = 0;
  // Ok when a broker answers; may block on a round trip (the engine's monitor thread calls it).
  virtual Status health() = 0;
  // Bootstrap address of the broker(s) in use (for the log line and tests).
  virtual std::string bootstrap() const = 0;
};

}  // namespace quizflow
