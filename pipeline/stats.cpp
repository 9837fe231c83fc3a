#include "pipeline/stats.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>

#include "pipeline/engine.h"
#include "pipeline/metrics.h"

namespace quizflow {
namespace {

constexpr double kMsToS = 0.001;

class Builder {
 public:
  void gauge(std::string json, std::string family, std::string help, double v,
             JsonType t = JsonType::integer, double scale = 1,
             std::vector<std::pair<std::string, std::string>> labels = {}) {
    out.push_back(Figure{std::move(json), std::move(family), "", FigureKind::gauge, std::move(help),
                         std::move(labels), v, scale, t});
  }
  void counter(std::string json, std::string family, std::string help, double v,
               std::vector<std::pair<std::string, std::string>> labels = {}) {
    out.push_back(Figure{std::move(json), std::move(family), "", FigureKind::counter,
                         std::move(help), std::move(labels), v, 1, JsonType::integer});
  }
  // A latency summary: p50 and p99 (quantile samples), count and sum; JSON in ms.
  void summary(const std::string& json, const std::string& family, const std::string& help,
               const LatencyWindow& w, std::vector<std::pair<std::string, std::string>> labels) {
    auto with = [&](const char* q) {
      auto l = labels;
      l.emplace_back("quantile", q);
      return l;
    };
    out.push_back(Figure{json + ".p50", family, "", FigureKind::summary, help, with("0.5"),
                         w.percentile_ms(50), kMsToS, JsonType::number});
    out.push_back(Figure{json + ".p99", family, "", FigureKind::summary, help, with("0.99"),
                         w.percentile_ms(99), kMsToS, JsonType::number});
    out.push_back(Figure{json + ".sum", family, "_sum", FigureKind::summary, help, labels,
                         w.sum_ms(), kMsToS, JsonType::number});
    out.push_back(Figure{json + ".count", family, "_count", FigureKind::summary, help, labels,
                         static_cast<double>(w.count()), 1, JsonType::integer});
  }
  std::vector<Figure> out;
};

// JSON tree built from dotted paths, keeping first-insertion order.
struct Node {
  std::vector<std::pair<std::string, std::unique_ptr<Node>>> children;
  const Figure* leaf = nullptr;
  std::string raw;  // pre-rendered JSON value
  Node* child(const std::string& name) {
    for (auto& [n, c] : children)
      if (n == name) return c.get();
    children.emplace_back(name, std::make_unique<Node>());
    return children.back().second.get();
  }
};

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void write_node(Writer& w, const Node& n) {
  if (n.leaf) {
    switch (n.leaf->type) {
      case JsonType::integer:
        w.Int64(static_cast<int64_t>(std::llround(n.leaf->value)));
        break;
      case JsonType::boolean:
        w.Bool(n.leaf->value != 0);
        break;
      case JsonType::number:
        w.Double(std::round(n.leaf->value * 1000.0) / 1000.0);
        break;
    }
    return;
  }
  if (!n.raw.empty()) {
    w.RawValue(n.raw.c_str(), n.raw.size(), rapidjson::kArrayType);
    return;
  }
  w.StartObject();
  for (const auto& [name, c] : n.children) {
    w.Key(name.c_str(), static_cast<rapidjson::SizeType>(name.size()));
    write_node(w, *c);
  }
  w.EndObject();
}

std::string prom_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

const char* prom_type(FigureKind k) {
  switch (k) {
    case FigureKind::counter:
      return "counter";
    case FigureKind::summary:
      return "summary";
    default:
      return "gauge";
  }
}

}  // namespace

StatsReport collect_stats(const Engine& engine) {
  StatsReport r;
  r.running = engine.running();
  Builder b;
  const PipelineMetrics& m = engine.metrics();
  b.gauge("uptime_s", "quizflow_uptime_seconds", "Seconds since the engine started.",
          static_cast<double>(engine.uptime_s()));
  for (size_t i = 0; i < kStageNames.size(); ++i) {
    const std::string name = kStageNames[i];
    const std::string p = "stages." + name + ".";
    const StageMetrics& s = m.stages[i];
    const std::vector<std::pair<std::string, std::string>> l = {{"stage", name}};
    const int64_t backlog = s.backlog.load(std::memory_order_relaxed);
    b.gauge(p + "backlog", "quizflow_stage_backlog", "Items handed to the stage, not started.",
            static_cast<double>(backlog), JsonType::integer, 1, l);
    b.gauge(p + "in_flight", "quizflow_stage_in_flight",
            "Chunks being processed (batch: events buffered or committing).",
            static_cast<double>(s.in_flight.load(std::memory_order_relaxed)), JsonType::integer, 1,
            l);
    b.counter(p + "processed", "quizflow_stage_processed_total", "Events passed on by the stage.",
              static_cast<double>(s.processed.load(std::memory_order_relaxed)), l);
    b.counter(p + "rejected", "quizflow_stage_rejected_total", "Events rejected by the stage.",
              static_cast<double>(s.rejected.load(std::memory_order_relaxed)), l);
    b.counter(p + "failed", "quizflow_stage_failed_total",
              "Events that failed in the stage (storage or transport).",
              static_cast<double>(s.failed.load(std::memory_order_relaxed)), l);
    const bool waiting = backlog > 0 || (i == kBatch && s.in_flight.load() > 0);
    b.gauge(p + "oldest_wait_ms", "quizflow_stage_oldest_wait_seconds",
            "Age of the oldest waiting item (batch: oldest buffered event).",
            waiting ? static_cast<double>(s.oldest_wait_us.load()) / 1000.0 : 0.0, JsonType::number,
            kMsToS, l);
    b.summary(p + "latency_ms", "quizflow_stage_latency_seconds",
              "Time a chunk spent in the stage, over the last 2048 chunks.", s.latency, l);
  }
  const SinkStats ks = engine.sink_stats();
  b.gauge("message_queue.queue_size", "quizflow_producer_queue_messages",
          "Notifications waiting in the Kafka producer.", static_cast<double>(ks.queue_size));
  b.counter("message_queue.total_processed", "quizflow_producer_delivered_total",
            "Notifications acknowledged by Kafka.", static_cast<double>(ks.delivered));
  b.counter("message_queue.failed", "quizflow_producer_failed_total",
            "Notifications that failed delivery or were refused.", static_cast<double>(ks.failed));
  b.gauge("message_queue.running", "quizflow_producer_running", "1 when the producer runs.",
          ks.running ? 1 : 0, JsonType::boolean);
  b.gauge("message_queue.num_workers", "quizflow_producer_workers",
          "Producer threads polling delivery reports.", 1);
  const PoolStats ps = engine.pool_stats();
  b.gauge("database_pool.pool_size", "quizflow_db_pool_size", "Connections kept (DB_POOL_SIZE).",
          static_cast<double>(ps.pool_size));
  b.gauge("database_pool.max_overflow", "quizflow_db_pool_max_overflow",
          "Extra connections allowed under load (DB_MAX_OVERFLOW).",
          static_cast<double>(ps.max_overflow));
  b.gauge("database_pool.checked_out_connections", "quizflow_db_pool_checked_out_connections",
          "Connections in use now.", static_cast<double>(ps.checked_out));
  b.gauge("database_pool.overflow_connections", "quizflow_db_pool_overflow_connections",
          "Connections open beyond pool_size.", static_cast<double>(ps.overflow));
  b.gauge("database_pool.total_connections", "quizflow_db_pool_connections",
          "Open connections, idle or in use.", static_cast<double>(ps.total));
  b.counter("database_pool.wait_count", "quizflow_db_pool_waits_total",
            "Checkouts that had to wait for a connection.", static_cast<double>(ps.wait_count));
  b.gauge("database_pool.wait_ms_p99", "quizflow_db_pool_wait_p99_seconds",
          "99th percentile of the checkout wait.", ps.wait_ms_p99, JsonType::number, kMsToS);
  b.counter("database_pool.timeouts", "quizflow_db_pool_timeouts_total",
            "Checkouts that gave up (the request got 503).", static_cast<double>(ps.timeouts));
  b.counter("database_pool.discarded", "quizflow_db_pool_discarded_total",
            "Broken connections dropped and replaced.", static_cast<double>(ps.discarded));
  const BatchMetrics& bm = m.batches;
  b.counter("batches.committed", "quizflow_batches_committed_total",
            "Batch transactions committed (each holds one or more quizzes' batches).",
            static_cast<double>(bm.committed.load()));
  b.counter("batches.failed", "quizflow_batches_failed_total",
            "Batch transactions that failed (their requests got 503).",
            static_cast<double>(bm.failed.load()));
  b.counter("batches.rows", "quizflow_batch_rows_total",
            "Answers newly stored by committed batches.", static_cast<double>(bm.rows.load()));
  b.gauge("batches.last_commit_ms", "quizflow_batch_last_commit_seconds",
          "Duration of the last commit.", static_cast<double>(bm.last_commit_ms.load()),
          JsonType::integer, kMsToS);
  b.summary("batches.commit_ms", "quizflow_batch_commit_seconds",
            "Batch transaction time, over the last 2048 batches.", bm.commit, {});
  b.gauge("batches.pending_events", "quizflow_batch_pending_events",
          "Events buffered in the batch stage or committing.",
          static_cast<double>(engine.pending_events()));
  b.counter("http.overloaded", "quizflow_http_overloaded_total",
            "Answer requests refused with 503 because the pipeline was full.",
            static_cast<double>(m.http_overloaded.load()));
  b.gauge("http.events_in_flight", "quizflow_events_in_flight",
          "Answers admitted and not yet answered.", static_cast<double>(m.events_in_flight.load()));
  b.gauge("http.max_in_flight", "quizflow_events_in_flight_limit",
          "Admission limit (QUIZFLOW_MAX_IN_FLIGHT).",
          static_cast<double>(engine.config().max_in_flight_events));
  r.figures = std::move(b.out);
  r.largest_pending = engine.largest_pending();
  return r;
}

std::string stats_json(const StatsReport& r) {
  Node root;
  for (const Figure& f : r.figures) {
    Node* n = &root;
    size_t start = 0;
    for (;;) {
      const size_t dot = f.json.find('.', start);
      n = n->child(
          f.json.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    n->leaf = &f;
  }
  {
    std::string arr = "[";
    for (const auto& [quiz, events] : r.largest_pending) {
      if (arr.size() > 1) arr += ',';
      arr += "{\"quiz_id\":" + std::to_string(quiz) + ",\"events\":" + std::to_string(events) + "}";
    }
    arr += "]";
    root.child("batches")->child("largest_pending")->raw = arr;
  }
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("status");
  w.String(r.running ? "running" : "stopped");
  for (const auto& [name, c] : root.children) {
    w.Key(name.c_str(), static_cast<rapidjson::SizeType>(name.size()));
    write_node(w, *c);
  }
  w.EndObject();
  return {sb.GetString(), sb.GetSize()};
}

std::string stats_prometheus(const StatsReport& r) {
  // Samples grouped by family, families in first-appearance order.
  std::vector<std::string> order;
  std::map<std::string, std::vector<const Figure*>> families;
  for (const Figure& f : r.figures) {
    auto [it, fresh] = families.try_emplace(f.family);
    if (fresh) order.push_back(f.family);
    it->second.push_back(&f);
  }
  std::string out;
  out.reserve(16384);
  out += "# HELP quizflow_up 1 when the engine is running.\n# TYPE quizflow_up gauge\n";
  out += std::string("quizflow_up ") + (r.running ? "1" : "0") + "\n";
  for (const auto& name : order) {
    const auto& samples = families[name];
    out += "# HELP " + name + " " + samples.front()->help + "\n";
    out += "# TYPE " + name + " " + prom_type(samples.front()->kind) + "\n";
    for (const Figure* f : samples) {
      out += name + f->suffix;
      if (!f->labels.empty()) {
        out += '{';
        for (size_t i = 0; i < f->labels.size(); ++i) {
          if (i) out += ',';
          out += f->labels[i].first + "=\"" + f->labels[i].second + "\"";
        }
        out += '}';
      }
      out += ' ' + prom_number(f->value * f->prom_scale) + '\n';
    }
  }
  return out;
}

}  // namespace quizflow
