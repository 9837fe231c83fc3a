#include "pipeline/outbox_relay.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "core/log_rate.h"

namespace quizflow {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kMarkEvery = std::chrono::milliseconds(100);  // delete delivered rows this often
constexpr auto kSweepEvery = std::chrono::milliseconds(1000);
constexpr int64_t kSweepMessages = 50000;   // messages re-published per sweep at most
constexpr size_t kMaxInFlightRows = 20000;  // no sweep while this many rows are in flight

void warn_limited(const std::string& what) {
  static LogRate rate;
  if (int64_t more = 0; rate.allow(more))
    spdlog::warn("outbox relay: {} ({} similar lines held back)", what, more);
}

}  // namespace

OutboxRelay::OutboxRelay(const Config& config, Store& store, NotificationSink& sink,
                         LifecycleMetrics& metrics)
    : config_(config), store_(store), sink_(sink), metrics_(metrics) {}

OutboxRelay::~OutboxRelay() { stop(); }

void OutboxRelay::start() {
  if (started_) return;
  started_ = true;
  {
    MutexLock lock(mu_);
    stop_ = false;
  }
  sink_.set_delivery_listener([this](int64_t id, bool ok) { on_delivery(id, ok); });
  thread_ = std::thread([this] { loop(); });
}

void OutboxRelay::stop() {
  if (!started_) return;
  started_ = false;
  {
    MutexLock lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  sink_.set_delivery_listener(nullptr);
  mark_sent();  // what was delivered by now
}

size_t OutboxRelay::publish(OutboxGroup& group) {
  if (group.outbox_id != 0) {
    MutexLock lock(mu_);
    in_flight_.insert(group.outbox_id);
  }
  // Not under mu_: the sink may report (and call on_delivery) from inside publish.
  try {
    return sink_.publish(group.messages, group.outbox_id);
  } catch (...) {
    if (group.outbox_id != 0) {  // no report will come: the sweep sends the row again
      MutexLock lock(mu_);
      in_flight_.erase(group.outbox_id);
    }
    throw;
  }
}

void OutboxRelay::on_delivery(int64_t outbox_id, bool ok) {
  MutexLock lock(mu_);
  in_flight_.erase(outbox_id);
  if (ok) {
    delivered_.push_back(outbox_id);
  } else {
    // Stays in the outbox; a later sweep publishes it again.
    metrics_.undelivered.fetch_add(1, std::memory_order_relaxed);
  }
}

void OutboxRelay::loop() {
  auto next_sweep = Clock::now();  // at once: rows a previous run left
  for (;;) {
    {
      MutexLock lock(mu_);
      const auto wake = std::min(next_sweep, Clock::now() + kMarkEvery);
      while (!stop_ && cv_.wait_until(mu_, wake)) {
      }
      if (stop_) return;
    }
    try {
      mark_sent();
      if (Clock::now() >= next_sweep) {
        next_sweep = Clock::now() + kSweepEvery;
        sweep();
        poll_figures();
      }
    } catch (const std::exception& e) {  // the relay thread never dies of an exception
      warn_limited(e.what());
    }
  }
}

void OutboxRelay::mark_sent() {
  std::vector<int64_t> ids;
  {
    MutexLock lock(mu_);
    ids.swap(delivered_);
  }
  if (ids.empty()) return;
  auto done = store_.outbox_sent(ids);
  if (!done.ok()) {
    // Kept for the next pass (a row delivered twice is harmless; one never deleted is resent).
    warn_limited("marking " + std::to_string(ids.size()) +
                 " rows sent failed: " + done.status().to_string());
    MutexLock lock(mu_);
    delivered_.insert(delivered_.end(), ids.begin(), ids.end());
    return;
  }
  metrics_.relayed.fetch_add(*done, std::memory_order_relaxed);
}

void OutboxRelay::sweep() {
  std::vector<int64_t> skip;
  {
    MutexLock lock(mu_);
    if (in_flight_.size() >= kMaxInFlightRows) return;
    skip.assign(in_flight_.begin(), in_flight_.end());
    // Delivered rows not deleted yet are not unsent either.
    skip.insert(skip.end(), delivered_.begin(), delivered_.end());
  }
  // Only while the producer has room: what it holds already is on its way.
  if (sink_.stats().queue_size > config_.notify_queue_max / 2) return;
  auto rows = store_.outbox_unsent(config_.outbox_relay_after_ms, kSweepMessages, skip);
  if (!rows.ok()) {
    warn_limited("reading unsent rows failed: " + rows.status().to_string());
    return;
  }
  if (!rows->empty())
    spdlog::info("outbox relay: publishing {} stored rows again (oldest id {})", rows->size(),
                 rows->front().outbox_id);
  for (OutboxGroup& g : *rows) {
    {
      MutexLock lock(mu_);
      if (in_flight_.count(g.outbox_id)) continue;  // published meanwhile
    }
    metrics_.resent.fetch_add(1, std::memory_order_relaxed);
    publish(g);
  }
}

void OutboxRelay::poll_figures() {
  auto st = store_.outbox_stats();
  if (!st.ok()) return;
  metrics_.unsent.store(st->unsent, std::memory_order_relaxed);
  metrics_.oldest_unsent_ms.store(st->oldest_unsent_ms, std::memory_order_relaxed);
}

}  // namespace quizflow
