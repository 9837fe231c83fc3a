// The figures of GET /monitoring/stats and GET /metrics (spec §6) and their two renderings. The
// figures are declared once, in pipeline/stats.cpp; a figure cannot appear in one output and not
// in the other.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace quizflow {

enum class FigureKind { counter, gauge, summary };
enum class JsonType { integer, number, boolean };

struct Figure {
  std::string json;    // dotted path under /monitoring/stats, e.g. "stages.ingest.backlog"
  std::string family;  // Prometheus metric family, e.g. "quizflow_stage_backlog"
  std::string suffix;  // "" or, for summaries, "_sum" / "_count"
  FigureKind kind = FigureKind::gauge;
  std::string help;
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;       // in JSON units (milliseconds for *_ms paths)
  double prom_scale = 1;  // Prometheus value = value * prom_scale (ms -> s: 0.001)
  JsonType type = JsonType::integer;
};

struct StatsReport {
  bool running = false;
  std::vector<Figure> figures;
  std::vector<std::pair<int64_t, int64_t>> largest_pending;  // (quiz_id, events), JSON only
};

// {"status":"running","uptime_s":…,"stages":{…},"message_queue":{…},"database_pool":{…},
//  "batches":{…},"http":{…}}
std::string stats_json(const StatsReport& r);

// Prometheus text exposition format 0.0.4.
std::string stats_prometheus(const StatsReport& r);

}  // namespace quizflow
