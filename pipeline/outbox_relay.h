// The outbox relay (spec §4 notifications, §6 `outbox`): publishes the notifications of each
// committed transaction, marks their outbox row sent (deletes it) only after every message of it
// was delivered, and re-publishes rows that are stored but not in flight here — after a
// restart, a failed delivery or a broker outage — once they are `outbox_relay_after_ms` old.
// Duplicates are possible (a row re-published by another engine, a crash between delivery and
// the delete); every message keeps its deterministic notification_id, so consumers drop them.
#pragma once

#include <cstdint>
#include <thread>
#include <unordered_set>
#include <vector>

#include "core/config.h"
#include "core/metrics.h"
#include "core/mutex.h"
#include "core/notifier.h"
#include "core/store.h"

namespace quizflow {

class OutboxRelay {
 public:
  OutboxRelay(const Config& config, Store& store, NotificationSink& sink,
              LifecycleMetrics& metrics);
  ~OutboxRelay();  // stop()
  OutboxRelay(const OutboxRelay&) = delete;
  OutboxRelay& operator=(const OutboxRelay&) = delete;

  // Registers as the sink's delivery listener and starts the relay thread (sweeps at once).
  void start() QF_EXCLUDES(mu_);
  // Marks the rows delivered so far sent and stops the thread. Rows still in flight stay in the
  // outbox (the next run relays them). Idempotent.
  void stop() QF_EXCLUDES(mu_);

  // Hands a group to the sink; a stored group (outbox_id != 0) is in flight until its report.
  // Thread-safe; never waits for I/O. Returns how many messages the sink refused.
  size_t publish(OutboxGroup& group) QF_EXCLUDES(mu_);

 private:
  void on_delivery(int64_t outbox_id, bool ok) QF_EXCLUDES(mu_);
  void loop() QF_EXCLUDES(mu_);
  void mark_sent() QF_EXCLUDES(mu_);
  void sweep() QF_EXCLUDES(mu_);
  void poll_figures();

  const Config& config_;
  Store& store_;
  NotificationSink& sink_;
  LifecycleMetrics& metrics_;
  Mutex mu_;
  CondVar cv_;
  std::unordered_set<int64_t> in_flight_ QF_GUARDED_BY(mu_);
  std::vector<int64_t> delivered_ QF_GUARDED_BY(mu_);  // to delete
  bool stop_ QF_GUARDED_BY(mu_) = false;
  bool started_ = false;  // start()/stop() are called by one thread (the engine's life cycle)
  std::thread thread_;
};

}  // namespace quizflow
