#include "core/config.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <vector>

namespace quizflow {
namespace {

// One row per key: its environment name, and how to set it from a string or a JSON value.
struct Key {
  const char* env;
  std::function<void(Config&, const std::string&)> set_str;
  std::function<std::string(const Config&)> show;
  bool secret = false;
};

int64_t parse_int(const std::string& key, const std::string& v) {
  try {
    size_t pos = 0;
    const long long x = std::stoll(v, &pos, 10);
    if (pos != v.size()) throw std::invalid_argument("trailing");
    return x;
  } catch (const std::exception&) {
    throw ConfigError(key, "must be an integer, got '" + v + "'");
  }
}

bool parse_bool(const std::string& key, const std::string& v) {
  if (v == "true" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "0" || v == "no" || v.empty()) return false;
  throw ConfigError(key, "must be true or false, got '" + v + "'");
}

template <typename T>
Key int_key(const char* env, T Config::*field) {
  return Key{env,
             [env, field](Config& c, const std::string& v) {
               const int64_t x = parse_int(env, v);
               if (x < std::numeric_limits<T>::min() || x > std::numeric_limits<T>::max())
                 throw ConfigError(env, "out of range: " + v);
               c.*field = static_cast<T>(x);
             },
             [field](const Config& c) { return std::to_string(c.*field); }};
}

Key str_key(const char* env, std::string Config::*field, bool secret = false) {
  return Key{env, [field](Config& c, const std::string& v) { c.*field = v; },
             [field](const Config& c) { return c.*field; }, secret};
}

Key bool_key(const char* env, bool Config::*field) {
  return Key{env, [env, field](Config& c, const std::string& v) { c.*field = parse_bool(env, v); },
             [field](const Config& c) { return std::string(c.*field ? "true" : "false"); }};
}

const std::vector<Key>& keys() {
  static const std::vector<Key> k = {
      str_key("DATABASE_URL", &Config::database_url, true),
      str_key("KAFKA_BROKERS", &Config::kafka_brokers),
      str_key("KAFKA_TOPIC_ANSWERS", &Config::topic_answers),
      str_key("KAFKA_TOPIC_NOTIFICATIONS", &Config::topic_notifications),
      str_key("KAFKA_TOPIC_DLQ", &Config::topic_dlq),
      bool_key("QUIZFLOW_CONSUME_ANSWERS", &Config::consume_answers),
      str_key("QUIZFLOW_INGRESS_MODE", &Config::ingress_mode),
      str_key("KAFKA_GROUP_ID", &Config::kafka_group_id),
      int_key("KAFKA_SESSION_TIMEOUT_MS", &Config::kafka_session_timeout_ms),
      int_key("KAFKA_COMMIT_INTERVAL_MS", &Config::kafka_commit_interval_ms),
      str_key("QUIZFLOW_HTTP_ADDR", &Config::http_addr),
      int_key("QUIZFLOW_HTTP_THREADS", &Config::http_threads),
      str_key("QUIZFLOW_API_TOKEN", &Config::api_token, true),
      int_key("QUIZFLOW_HTTP_MAX_BODY", &Config::http_max_body_bytes),
      int_key("QUIZFLOW_HTTP_MAX_BATCH", &Config::http_max_batch),
      int_key("QUIZFLOW_HTTP_HEADER_TIMEOUT_MS", &Config::http_header_timeout_ms),
      int_key("QUIZFLOW_HTTP_BODY_TIMEOUT_MS", &Config::http_body_timeout_ms),
      int_key("QUIZFLOW_HTTP_KEEPALIVE_TIMEOUT_MS", &Config::http_keepalive_timeout_ms),
      int_key("QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS", &Config::http_request_timeout_ms),
      int_key("QUIZFLOW_HTTP_MAX_CONNECTIONS", &Config::http_max_connections),
      int_key("DB_POOL_SIZE", &Config::db_pool_size),
      int_key("DB_MAX_OVERFLOW", &Config::db_max_overflow),
      int_key("DB_WRITERS", &Config::db_writers),
      int_key("QUIZFLOW_GRAPH_THREADS", &Config::graph_threads),
      int_key("DB_CHECKOUT_TIMEOUT_MS", &Config::db_checkout_timeout_ms),
      int_key("DB_STATEMENT_TIMEOUT_MS", &Config::db_statement_timeout_ms),
      int_key("QUIZFLOW_SLOW_COMMIT_MS", &Config::slow_commit_ms),
      int_key("QUIZFLOW_DRAIN_TIMEOUT_MS", &Config::drain_timeout_ms),
      int_key("QUIZFLOW_HEALTH_MAX_COMMIT_STALL_MS", &Config::health_max_commit_stall_ms),
      int_key("BATCH_MAX_SIZE", &Config::batch_max_size),
      int_key("BATCH_MAX_DELAY_MS", &Config::batch_max_delay_ms),
      int_key("QUIZFLOW_MAX_IN_FLIGHT", &Config::max_in_flight_events),
      int_key("QUIZFLOW_NOTIFY_QUEUE_MAX", &Config::notify_queue_max),
      int_key("QUIZ_CLOSE_GRACE_MS", &Config::close_grace_ms),
      int_key("NOTIFY_TOP_N", &Config::notify_top_n),
      int_key("NOTIFY_COALESCE_MS", &Config::notify_coalesce_ms),
      bool_key("QUIZFLOW_OUTBOX", &Config::outbox),
      int_key("OUTBOX_RELAY_AFTER_MS", &Config::outbox_relay_after_ms),
      int_key("KAFKA_MESSAGE_TIMEOUT_MS", &Config::kafka_message_timeout_ms),
      str_key("QUIZFLOW_LOG_LEVEL", &Config::log_level),
      str_key("QUIZFLOW_LOG_FORMAT", &Config::log_format),
  };
  return k;
}

std::string lower(const char* s) {
  std::string r(s);
  for (auto& ch : r) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return r;
}

void range(const char* key, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    throw ConfigError(key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                               ", got " + std::to_string(v));
}

}  // namespace

void split_host_port(const std::string& addr, const std::string& key, std::string& host,
                     uint16_t& port) {
  const auto colon = addr.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == addr.size())
    throw ConfigError(key, "must be host:port, got '" + addr + "'");
  host = addr.substr(0, colon);
  const int64_t p = parse_int(key, addr.substr(colon + 1));
  if (p < 0 || p > 65535) throw ConfigError(key, "port must be 0-65535");
  port = static_cast<uint16_t>(p);
}

Config load_config(const std::string& path) {
  Config c;
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) throw ConfigError("--config", "cannot read the config file");
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    rapidjson::Document d;
    d.Parse(text.c_str(), text.size());
    if (d.HasParseError() || !d.IsObject())
      throw ConfigError("--config", std::string("not a JSON object: ") +
                                        rapidjson::GetParseError_En(d.GetParseError()));
    for (auto m = d.MemberBegin(); m != d.MemberEnd(); ++m) {
      const std::string name = m->name.GetString();
      const Key* found = nullptr;
      for (const auto& k : keys())
        if (lower(k.env) == name) found = &k;
      if (!found) throw ConfigError(name, "unknown key in the config file");
      std::string v;
      if (m->value.IsString())
        v = m->value.GetString();
      else if (m->value.IsBool())
        v = m->value.GetBool() ? "true" : "false";
      else if (m->value.IsInt64())
        v = std::to_string(m->value.GetInt64());
      else
        throw ConfigError(name, "must be a string, an integer or a boolean");
      found->set_str(c, v);
    }
  }
  for (const auto& k : keys()) {
    if (const char* v = std::getenv(k.env)) k.set_str(c, v);
  }
  validate_config(c);
  return c;
}

void validate_config(const Config& c) {
  std::string host;
  uint16_t port;
  split_host_port(c.http_addr, "QUIZFLOW_HTTP_ADDR", host, port);
  range("QUIZFLOW_HTTP_THREADS", c.http_threads, 1, 64);
  range("QUIZFLOW_HTTP_MAX_BODY", c.http_max_body_bytes, 1024, 64 << 20);
  range("QUIZFLOW_HTTP_MAX_BATCH", c.http_max_batch, 1, 100000);
  range("QUIZFLOW_HTTP_HEADER_TIMEOUT_MS", c.http_header_timeout_ms, 100, 600000);
  range("QUIZFLOW_HTTP_BODY_TIMEOUT_MS", c.http_body_timeout_ms, 100, 600000);
  range("QUIZFLOW_HTTP_KEEPALIVE_TIMEOUT_MS", c.http_keepalive_timeout_ms, 100, 3600000);
  range("QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS", c.http_request_timeout_ms, 100, 600000);
  // Pistache 0.0.5 answers a bare 408 to a request unanswered after the header or the body
  // timeout, whichever is shorter (checked every 500 ms): the deadline comes a second earlier.
  if (c.http_request_timeout_ms + 1000 > std::min(c.http_header_timeout_ms, c.http_body_timeout_ms))
    throw ConfigError("QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS",
                      "must be at least 1000 below QUIZFLOW_HTTP_HEADER_TIMEOUT_MS (" +
                          std::to_string(c.http_header_timeout_ms) +
                          ") and QUIZFLOW_HTTP_BODY_TIMEOUT_MS (" +
                          std::to_string(c.http_body_timeout_ms) + "), got " +
                          std::to_string(c.http_request_timeout_ms) +
                          ": lower it or raise those (Pistache answers a bare 408 after them)");
  range("QUIZFLOW_HTTP_MAX_CONNECTIONS", c.http_max_connections, 1, 1000000);
  range("DB_POOL_SIZE", c.db_pool_size, 1, 1000);
  range("DB_MAX_OVERFLOW", c.db_max_overflow, 0, 1000);
  range("DB_WRITERS", c.db_writers, 1, 64);
  range("QUIZFLOW_GRAPH_THREADS", c.graph_threads, 1, 256);
  range("DB_CHECKOUT_TIMEOUT_MS", c.db_checkout_timeout_ms, 1, 600000);
  range("DB_STATEMENT_TIMEOUT_MS", c.db_statement_timeout_ms, 100, 3600000);
  range("QUIZFLOW_SLOW_COMMIT_MS", c.slow_commit_ms, 1, 3600000);
  range("QUIZFLOW_DRAIN_TIMEOUT_MS", c.drain_timeout_ms, 100, 3600000);
  range("QUIZFLOW_HEALTH_MAX_COMMIT_STALL_MS", c.health_max_commit_stall_ms, 100, 3600000);
  if (c.db_writers > c.db_pool_size + c.db_max_overflow)
    throw ConfigError("DB_WRITERS", "must not exceed DB_POOL_SIZE + DB_MAX_OVERFLOW");
  range("BATCH_MAX_SIZE", c.batch_max_size, 1, 1000000);
  range("BATCH_MAX_DELAY_MS", c.batch_max_delay_ms, 0, 60000);
  range("QUIZFLOW_MAX_IN_FLIGHT", c.max_in_flight_events, 1, 100000000);
  range("QUIZFLOW_NOTIFY_QUEUE_MAX", c.notify_queue_max, 1, 100000000);
  range("QUIZ_CLOSE_GRACE_MS", c.close_grace_ms, 0, 86400000);
  range("NOTIFY_TOP_N", c.notify_top_n, 0, 1000);
  range("NOTIFY_COALESCE_MS", c.notify_coalesce_ms, 0, 3600000);
  range("OUTBOX_RELAY_AFTER_MS", c.outbox_relay_after_ms, 100, 3600000);
  range("KAFKA_MESSAGE_TIMEOUT_MS", c.kafka_message_timeout_ms, 1000, 3600000);
  range("KAFKA_SESSION_TIMEOUT_MS", c.kafka_session_timeout_ms, 1000, 300000);
  range("KAFKA_COMMIT_INTERVAL_MS", c.kafka_commit_interval_ms, 100, 3600000);
  for (const auto& [key, t] : {std::pair{"KAFKA_TOPIC_ANSWERS", &c.topic_answers},
                               std::pair{"KAFKA_TOPIC_NOTIFICATIONS", &c.topic_notifications},
                               std::pair{"KAFKA_TOPIC_DLQ", &c.topic_dlq}}) {
    if (t->empty() || t->size() > 249) throw ConfigError(key, "must be 1-249 characters");
  }
  if (c.log_level != "trace" && c.log_level != "debug" && c.log_level != "info" &&
      c.log_level != "warn" && c.log_level != "error")
    throw ConfigError("QUIZFLOW_LOG_LEVEL", "must be trace, debug, info, warn or error");
  if (c.log_format != "plain" && c.log_format != "json")
    throw ConfigError("QUIZFLOW_LOG_FORMAT", "must be plain or json");
  if (c.ingress_mode != "direct" && c.ingress_mode != "kafka")
    throw ConfigError("QUIZFLOW_INGRESS_MODE", "must be direct or kafka");
  if (!c.database_url.empty() && c.database_url.rfind("postgres", 0) != 0 &&
      c.database_url.find('=') == std::string::npos)
    throw ConfigError("DATABASE_URL", "must be a postgresql:// URL or a key=value string");
}

std::string mask_url(const std::string& url) {
  std::string out = url;
  // URL form: postgresql://user:password@host/db -> postgresql://user:***@host/db
  const auto scheme = out.find("://");
  if (scheme != std::string::npos) {
    const auto at = out.find('@', scheme + 3);
    const auto slash = out.find('/', scheme + 3);
    if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
      const auto colon = out.find(':', scheme + 3);
      if (colon != std::string::npos && colon < at)
        out = out.substr(0, colon + 1) + "***" + out.substr(at);
    }
  }
  // Every "password = value" (key=value strings and ?password= query parameters); the value
  // is a quoted string with \' escapes, or runs to the next space or '&'.
  auto lower = [](char ch) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  };
  for (size_t i = 0; i + 8 <= out.size(); ++i) {
    bool match = true;
    for (size_t k = 0; k < 8 && match; ++k) match = lower(out[i + k]) == "password"[k];
    if (!match) continue;
    size_t j = i + 8;
    while (j < out.size() && out[j] == ' ') ++j;
    if (j >= out.size() || out[j] != '=') continue;
    ++j;
    while (j < out.size() && out[j] == ' ') ++j;
    size_t end = j;
    if (end < out.size() && out[end] == '\'') {
      ++end;
      while (end < out.size() && out[end] != '\'') end += out[end] == '\\' ? 2 : 1;
      end = std::min(out.size(), end + 1);
    } else {
      while (end < out.size() && out[end] != ' ' && out[end] != '&') ++end;
    }
    out.replace(j, end - j, "***");
    i = j + 2;
  }
  return out;
}

std::string describe_config(const Config& c) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  for (const auto& k : keys()) {
    w.Key(k.env);
    std::string v = k.show(c);
    if (k.secret && !v.empty()) v = std::string(k.env) == "DATABASE_URL" ? mask_url(v) : "***";
    w.String(v.c_str());
  }
  w.EndObject();
  return sb.GetString();
}

}  // namespace quizflow
