#include "support/test_db.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdlib>
#include <future>
#include <pqxx/pqxx>
#include <random>

namespace quizflow::testing {
namespace {

// Replaces the database name (the path after the last '/') of a postgresql:// URL.
std::string with_db(const std::string& url, const std::string& db) {
  const auto q = url.find('?');
  const std::string base = url.substr(0, q);
  const auto slash = base.rfind('/');
  std::string out = base.substr(0, slash + 1) + db;
  if (q != std::string::npos) out += url.substr(q);
  return out;
}

}  // namespace

TestDatabase::TestDatabase() {
  const char* url = std::getenv("DATABASE_URL");
  if (!url || !*url) {
    ADD_FAILURE() << "DATABASE_URL is not set: run the tests through scripts/test";
    throw std::runtime_error("DATABASE_URL is not set");
  }
  admin_url_ = url;
  std::random_device rd;
  name_ = "qf_test_" + std::to_string(rd()) + std::to_string(rd() % 1000);
  pqxx::connection c(admin_url_);
  pqxx::nontransaction tx(c);
  tx.exec("CREATE DATABASE " + name_);
  url_ = with_db(admin_url_, name_);
}

TestDatabase::~TestDatabase() {
  try {
    pqxx::connection c(admin_url_);
    pqxx::nontransaction tx(c);
    tx.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dropping %s failed: %s\n", name_.c_str(), e.what());
  }
}

void TestDatabase::admin(const std::string& sql) const {
  pqxx::connection c(admin_url_);
  pqxx::nontransaction tx(c);
  tx.exec(sql);
}

std::vector<std::vector<std::string>> TestDatabase::query(const std::string& sql) const {
  pqxx::connection c(url_);
  pqxx::nontransaction tx(c);
  std::vector<std::vector<std::string>> out;
  for (const auto& row : tx.exec(sql)) {
    std::vector<std::string> cells;
    for (const auto& f : row) cells.emplace_back(f.is_null() ? "" : f.c_str());
    out.push_back(std::move(cells));
  }
  return out;
}

int64_t TestDatabase::scalar(const std::string& sql) const {
  pqxx::connection c(url_);
  pqxx::nontransaction tx(c);
  return tx.exec(sql)[0][0].as<int64_t>();
}

void CountingSink::set_delivery_listener(DeliveryFn fn) {
  MutexLock lock(mu_);
  listener_ = std::move(fn);
}

size_t CountingSink::publish(std::vector<Notification>& batch, int64_t outbox_id) {
  DeliveryFn listener;
  {
    MutexLock lock(mu_);
    messages_.insert(messages_.end(), batch.begin(), batch.end());
    listener = listener_;
  }
  if (outbox_id != 0 && listener) listener(outbox_id, true);
  return 0;
}

SinkStats CountingSink::stats() const {
  MutexLock lock(mu_);
  SinkStats s;
  s.delivered = static_cast<int64_t>(messages_.size());
  s.running = true;
  return s;
}

std::vector<Notification> CountingSink::taken() const {
  MutexLock lock(mu_);
  return messages_;
}

Config test_config(const std::string& database_url) {
  Config c;
  c.database_url = database_url;
  c.batch_max_delay_ms = 2;
  c.batch_max_size = 500;
  c.db_writers = 2;
  return c;
}

Answered submit_and_wait(Engine& engine, const std::string& body) {
  auto done = std::make_shared<std::promise<Answered>>();
  auto fut = done->get_future();
  for (;;) {
    const auto res = engine.submit(body, [done](Request& r) {
      done->set_value(Answered{r.error, r.items});
    });
    if (res == SubmitResult::admitted) break;
    if (res == SubmitResult::stopped) throw std::runtime_error("engine stopped");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // overloaded: retry
  }
  if (fut.wait_for(std::chrono::seconds(60)) != std::future_status::ready)
    throw std::runtime_error("no completion within 60 s");
  return fut.get();
}

std::vector<std::pair<std::string, std::string>> consume_all(const std::string& bootstrap,
                                                             const std::string& topic,
                                                             size_t expected, int timeout_ms) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::random_device rd;
  const std::string group = "qf-test-" + std::to_string(rd());
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof err);
  rd_kafka_conf_set(conf, "session.timeout.ms", "6000", err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk) throw std::runtime_error(err);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  std::vector<std::pair<std::string, std::string>> out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (out.size() < expected && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 200);
    if (!m) continue;
    if (!m->err) {
      out.emplace_back(std::string(static_cast<const char*>(m->key), m->key_len),
                       std::string(static_cast<const char*>(m->payload), m->len));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return out;
}

}  // namespace quizflow::testing
