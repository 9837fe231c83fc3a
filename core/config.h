// The one typed configuration of quizflow: defaults, JSON file, environment (environment wins),
// validated once at start-up. Every other unit only reads it.
#pragma once

#include <cstdint>
#include <string>

namespace quizflow {

struct Config {
  // PostgreSQL connection URL (DATABASE_URL). Required by serve/migrate.
  std::string database_url;
  // Kafka bootstrap servers (KAFKA_BROKERS). Empty: an in-process mock cluster (not durable).
  std::string kafka_brokers;
  std::string topic_answers = "quiz.answers";              // KAFKA_TOPIC_ANSWERS
  std::string topic_notifications = "quiz.notifications";  // KAFKA_TOPIC_NOTIFICATIONS
  std::string topic_dlq = "quiz.answers.dlq";              // KAFKA_TOPIC_DLQ
  bool consume_answers = false;                            // QUIZFLOW_CONSUME_ANSWERS
  // QUIZFLOW_INGRESS_MODE: "direct" (POST /v1/answers into this engine, answered once committed)
  // or "kafka" (produced to topic_answers, answered once Kafka acknowledged; scored by consumers)
  std::string ingress_mode = "direct";
  std::string kafka_group_id = "quizflow";  // KAFKA_GROUP_ID
  int kafka_session_timeout_ms = 10000;  // KAFKA_SESSION_TIMEOUT_MS: a silent member leaves after
  int kafka_commit_interval_ms = 1000;   // KAFKA_COMMIT_INTERVAL_MS: settled offsets to Kafka

  // HTTP listener "host:port" (QUIZFLOW_HTTP_ADDR); port 0 picks a free port.
  std::string http_addr = "127.0.0.1:8000";
  int http_threads = 2;                   // QUIZFLOW_HTTP_THREADS, 1..64
  std::string api_token;                  // QUIZFLOW_API_TOKEN; empty: no auth on writes
  int64_t http_max_body_bytes = 1 << 20;  // QUIZFLOW_HTTP_MAX_BODY, 1 KiB..64 MiB
  int http_max_batch = 1000;              // QUIZFLOW_HTTP_MAX_BATCH, answers per POST
  int http_header_timeout_ms = 10000;     // QUIZFLOW_HTTP_HEADER_TIMEOUT_MS
  int http_body_timeout_ms = 20000;       // QUIZFLOW_HTTP_BODY_TIMEOUT_MS
  int http_keepalive_timeout_ms = 60000;
  // QUIZFLOW_HTTP_KEEPALIVE_TIMEOUT_MS
  // QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS: an answer request whose commit (or, in Kafka mode, Kafka's
  // acknowledgement) has not come by then gets 503 + Retry-After, outcome unknown, resend safe.
  // At least 1 s below the header and body timeouts (Pistache 0.0.5 answers a bare 408 after
  // the shorter of them).
  int http_request_timeout_ms = 8000;
  // QUIZFLOW_HTTP_MAX_CONNECTIONS: open client connections; beyond them up to 32 more may ask
  // for /health only, further ones are closed at once (all counted); those already open go on
  // being served.
  int http_max_connections = 4096;

  int db_pool_size = 30;                // DB_POOL_SIZE (connections kept)
  int db_max_overflow = 50;             // DB_MAX_OVERFLOW
  int db_writers = 2;                   // DB_WRITERS: batch-committing threads
  int graph_threads = 2;                // QUIZFLOW_GRAPH_THREADS: oneTBB workers of the graph
  int db_checkout_timeout_ms = 5000;    // DB_CHECKOUT_TIMEOUT_MS: wait for a pooled connection
  int db_statement_timeout_ms = 30000;  // DB_STATEMENT_TIMEOUT_MS: per statement
  int slow_commit_ms = 1000;            // QUIZFLOW_SLOW_COMMIT_MS: log batches slower than this

  int batch_max_size = 5000;   // BATCH_MAX_SIZE: events per batch transaction
  int batch_max_delay_ms = 1;  // BATCH_MAX_DELAY_MS: oldest event's wait before a flush

  int64_t max_in_flight_events = 200000;  // QUIZFLOW_MAX_IN_FLIGHT: admitted, not yet answered
  int64_t notify_queue_max = 1000000;     // producer queue bound (messages)

  // Quiz lifecycle and notifications (spec §4).
  int64_t close_grace_ms = 2000;      // QUIZ_CLOSE_GRACE_MS: finalization this long after closes_at
  int notify_top_n = 10;              // NOTIFY_TOP_N: rank_changed within the top N
  int64_t notify_coalesce_ms = 1000;  // NOTIFY_COALESCE_MS: one rank_changed per player per window
  // QUIZFLOW_OUTBOX: notifications are written in the transaction that causes them and relayed
  // from PostgreSQL (durable). false: produced from memory after COMMIT (lost on a crash before
  // their delivery; for measuring the outbox's cost).
  bool outbox = true;
  // OUTBOX_RELAY_AFTER_MS: an outbox row this old and not in flight in this process is
  // (re)published by the relay's sweep (after a restart, a failed delivery or a broker outage).
  int64_t outbox_relay_after_ms = 5000;
  int kafka_message_timeout_ms = 300000;  // KAFKA_MESSAGE_TIMEOUT_MS: producer delivery timeout

  int drain_timeout_ms = 20000;  // QUIZFLOW_DRAIN_TIMEOUT_MS: longest graceful shutdown
  // QUIZFLOW_HEALTH_MAX_COMMIT_STALL_MS: /health answers 503 when a batch transaction has been
  // running this long and none committed meanwhile (PostgreSQL hung, a lock held).
  int health_max_commit_stall_ms = 10000;

  std::string log_level = "info";    // QUIZFLOW_LOG_LEVEL: trace|debug|info|warn|error
  std::string log_format = "plain";  // QUIZFLOW_LOG_FORMAT: plain|json
};

// Thrown when a configuration value is invalid; what() names the key.
struct ConfigError : std::exception {
  std::string key, msg;
  ConfigError(std::string k, std::string m)
      : key(std::move(k)), msg("config key " + key + ": " + std::move(m)) {}
  const char* what() const noexcept override { return msg.c_str(); }
};

// Loads defaults, then the JSON file at `path` (if non-empty; keys are the lower-case names of
// the environment variables, e.g. "database_url", "batch_max_size"), then the environment.
// Throws ConfigError naming the bad key.
Config load_config(const std::string& path);

// Checks ranges and formats; throws ConfigError naming the bad key.
void validate_config(const Config& c);

// The effective configuration as JSON with secrets (password in DATABASE_URL, token) masked.
std::string describe_config(const Config& c);

// DATABASE_URL with its password replaced by "***" (safe to log).
std::string mask_url(const std::string& url);

// Splits "host:port"; throws ConfigError for `key` when malformed.
void split_host_port(const std::string& addr, const std::string& key, std::string& host,
                     uint16_t& port);

}  // namespace quizflow
