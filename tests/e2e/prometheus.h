// Prometheus helpers for the end-to-end tests: a strict reader of the text exposition format
// (what GET /metrics must be), a real `prometheus` server (Debian's /usr/bin/prometheus) scraping
// a running engine, and small readers of its HTTP API's answers. Used by operations_test (the
// exposition and a real scrape) and dashboard_test (every query of the Grafana dashboard).
//
// Header-only; everything is `inline` in namespace qf_e2e, like server_fixture.h it builds on.
#pragma once

#include <rapidjson/document.h>
#include <signal.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "e2e/server_fixture.h"

namespace qf_e2e {

// ---------------------------------------------------------------------------------------------
// Prometheus text exposition: a strict reader
// ---------------------------------------------------------------------------------------------

struct Exposition {
  std::map<std::string, double> series;      // "name{labels}" as written -> value
  std::map<std::string, std::string> types;  // family -> counter|gauge|summary|histogram|untyped
  std::vector<std::string> problems;         // malformed lines and rule violations

  std::optional<double> get(const std::string& key) const {
    auto it = series.find(key);
    return it == series.end() ? std::nullopt : std::optional<double>(it->second);
  }
};

inline Exposition parse_exposition(const std::string& text) {
  static const std::regex help_re(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$)");
  static const std::regex type_re(
      R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|summary|histogram|untyped)$)");
  static const std::regex sample_re(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? ([^ ]+)(?: (-?[0-9]+))?$)");
  Exposition e;
  if (text.empty()) e.problems.push_back("empty exposition");
  if (!text.empty() && text.back() != '\n') e.problems.push_back("does not end with a newline");
  std::set<std::string> helped;
  std::string family;  // the family of the last # TYPE
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const std::string where = "line " + std::to_string(n) + " '" + line + "'";
    std::smatch m;
    if (line.empty()) continue;  // allowed by the format, ignored
    if (line.rfind("# HELP ", 0) == 0) {
      if (!std::regex_match(line, m, help_re)) {
        e.problems.push_back(where + ": malformed HELP");
      } else if (!helped.insert(m[1]).second) {
        e.problems.push_back(where + ": second HELP for " + m[1].str());
      }
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      if (!std::regex_match(line, m, type_re)) {
        e.problems.push_back(where + ": malformed TYPE");
        continue;
      }
      family = m[1];
      if (!e.types.emplace(family, m[2]).second)
        e.problems.push_back(where + ": second TYPE for " + family +
                             " (families must be contiguous)");
      const bool total = family.size() > 6 && family.compare(family.size() - 6, 6, "_total") == 0;
      if (m[2] == "counter" && !total)
        e.problems.push_back(where + ": counter family does not end in _total");
      if (m[2] != "counter" && total)
        e.problems.push_back(where + ": a " + m[2].str() + " family named like a counter (_total)");
      continue;
    }
    if (line[0] == '#') continue;  // a comment
    if (!std::regex_match(line, m, sample_re)) {
      e.problems.push_back(where + ": malformed sample line");
      continue;
    }
    const std::string name = m[1], labels = m[2], value = m[3];
    double v = 0;
    if (value == "NaN") {
      v = std::nan("");
    } else if (value == "+Inf" || value == "Inf") {
      v = HUGE_VAL;
    } else if (value == "-Inf") {
      v = -HUGE_VAL;
    } else {
      char* end = nullptr;
      v = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0') {
        e.problems.push_back(where + ": value is not a number");
        continue;
      }
    }
    // The sample must belong to the family of the last TYPE line.
    const std::string type = e.types.count(family) ? e.types[family] : "";
    bool belongs = name == family;
    for (const char* sfx : {"_sum", "_count", "_bucket"}) {
      if ((type == "summary" || type == "histogram") && name == family + sfx &&
          (std::string(sfx) != "_bucket" || type == "histogram"))
        belongs = true;
    }
    if (!belongs)
      e.problems.push_back(where + ": sample outside its family (last TYPE was '" + family + "')");
    if (!e.series.emplace(name + labels, v).second)
      e.problems.push_back(where + ": duplicate series");
  }
  for (const auto& [f, t] : e.types)
    if (!helped.count(f)) e.problems.push_back("family " + f + " has no HELP");
  return e;
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus
// ---------------------------------------------------------------------------------------------

// A prometheus server scraping one target; stopped (SIGTERM, then SIGKILL) on destruction. Each
// one has a directory (and so a TSDB) of its own: series stored by an earlier run of the test in
// this process (--gtest_repeat) would otherwise answer its queries before it scraped anything.
class PrometheusProcess {
 public:
  PrometheusProcess(const std::string& dir, uint16_t target_port)
      : dir_(dir + "/prometheus-" + random_hex(12)) {
    std::filesystem::create_directories(dir_ + "/data");
    port_ = free_port();
    write_file(dir_ + "/prometheus.yml",
               "global:\n"
               "  scrape_interval: 1s\n"
               "  evaluation_interval: 1s\n"
               "scrape_configs:\n"
               "  - job_name: quizflow\n"
               "    scrape_interval: 1s\n"
               "    scrape_timeout: 1s\n"
               "    metrics_path: /metrics\n"
               "    static_configs:\n"
               "      - targets: ['127.0.0.1:" +
                   std::to_string(target_port) + "']\n");
    pid_ = spawn({"/usr/bin/prometheus", "--config.file=" + dir_ + "/prometheus.yml",
                  "--storage.tsdb.path=" + dir_ + "/data",
                  "--web.listen-address=127.0.0.1:" + std::to_string(port_)},
                 {}, dir_ + "/prometheus.log", dir_ + "/prometheus.log");
  }
  ~PrometheusProcess() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (!wait_for(pid_, 10s)) std::fprintf(stderr, "prometheus needed SIGKILL\n");
  }
  PrometheusProcess(const PrometheusProcess&) = delete;
  PrometheusProcess& operator=(const PrometheusProcess&) = delete;

  uint16_t port() const { return port_; }
  std::string log() const { return tail(read_file(dir_ + "/prometheus.log"), 8192); }
  bool exited() {
    int st = 0;
    if (pid_ > 0 && ::waitpid(pid_, &st, WNOHANG) == pid_) pid_ = -1;
    return pid_ <= 0;
  }

  // GET `target` (e.g. "/api/v1/targets"): the answer's body parsed (an empty object when it is
  // not JSON or the request failed) and, in `raw`, the status and body or the error, for messages.
  rapidjson::Document get(const std::string& target, std::string& raw) {
    rapidjson::Document d;
    try {
      HttpClient c("127.0.0.1", port_, 5s);
      const HttpResponse r = c.request("GET", target);
      raw = show(r);
      d.Parse(r.body.c_str(), r.body.size());
    } catch (const std::exception& e) {
      raw = e.what();
    }
    if (d.HasParseError()) d.Parse("{}");
    return d;
  }

  // GET /api/v1/query?query=… (an instant query, evaluated now), as get().
  rapidjson::Document query(const std::string& promql, std::string& raw) {
    return get("/api/v1/query?query=" + url_encode(promql), raw);
  }

 private:
  std::string dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// The value of the single series of an instant-vector answer, or nullopt.
inline std::optional<std::string> single_value(const rapidjson::Document& d) {
  const rapidjson::Value* res = at_path(d, "data.result");
  if (str_at(d, "status") != "success" || res == nullptr || !res->IsArray() || res->Size() != 1)
    return std::nullopt;
  const auto& v = (*res)[0];
  if (!v.IsObject() || !v.HasMember("value") || !v["value"].IsArray() || v["value"].Size() != 2 ||
      !v["value"][1].IsString())
    return std::nullopt;
  return std::string(v["value"][1].GetString());
}

}  // namespace qf_e2e
