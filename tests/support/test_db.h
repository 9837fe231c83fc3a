// A fresh PostgreSQL database per test, on the server scripts/test started (DATABASE_URL).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/mutex.h"
#include "core/notifier.h"
#include "pipeline/engine.h"

namespace quizflow::testing {

class TestDatabase {
 public:
  TestDatabase();   // creates qf_test_<random>; fails the test when DATABASE_URL is unset
  ~TestDatabase();  // drops it
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }

  // Runs a statement on the server's maintenance database (DATABASE_URL), e.g. ALTER DATABASE.
  void admin(const std::string& sql) const;

  // Runs a query and returns every row as text cells (NULL as "").
  std::vector<std::vector<std::string>> query(const std::string& sql) const;
  int64_t scalar(const std::string& sql) const;

 private:
  std::string admin_url_, name_, url_;
};

// Counts notifications in memory (for tests that do not look at Kafka).
// Every publish counts as delivered at once (the delivery listener is told).
class CountingSink final : public NotificationSink {
 public:
  void set_delivery_listener(DeliveryFn fn) override;
  size_t publish(std::vector<Notification>& batch, int64_t outbox_id = 0) override;
  void flush(int) override {}
  SinkStats stats() const override;
  Status health() override { return Status(); }
  std::string bootstrap() const override { return "memory"; }
  std::vector<Notification> taken() const;

 private:
  mutable Mutex mu_;
  std::vector<Notification> messages_ QF_GUARDED_BY(mu_);
  DeliveryFn listener_ QF_GUARDED_BY(mu_);
};

// A config for tests: given database, mock-free Kafka settings, small batching delay.
Config test_config(const std::string& database_url);

// Submits `body` and waits for its completion; returns the finished request's items/error.
struct Answered {
  std::optional<RequestError> error;
  std::vector<Item> items;
};
Answered submit_and_wait(Engine& engine, const std::string& body);

// Reads every message of `topic` from the Kafka cluster at `bootstrap` until `expected`
// messages arrived or timeout_ms passed.
std::vector<std::pair<std::string, std::string>> consume_all(const std::string& bootstrap,
                                                             const std::string& topic,
                                                             size_t expected, int timeout_ms);

}  // namespace quizflow::testing
