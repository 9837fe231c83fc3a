// End-to-end operations tests (spec §3 health, §6 monitoring, §7 running it): the built quizflow
// binary (QUIZFLOW_BIN) against the PostgreSQL in DATABASE_URL, seen the way an operator sees it:
// /monitoring/stats read with curl and jq, /metrics linted by promtool and scraped by a real
// Prometheus, logs and every output checked for secrets, configuration errors naming their key,
// /health following Kafka and PostgreSQL outages, and `quizflow export` / `replay --dry-run`.
//
// Needs curl, jq, psql, promtool and prometheus in /usr/bin. Each server's output goes to a file
// in a temporary directory, printed when a test fails (the directory is then kept).
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "e2e/prometheus.h"
#include "e2e/server_fixture.h"

namespace {

using namespace qf_e2e;

// ---------------------------------------------------------------------------------------------
// Prerequisites and the temporary directory, shared by every suite of this file
// ---------------------------------------------------------------------------------------------

E2EPrereqs& prereqs() {
  static E2EPrereqs p = [] {
    E2EPrereqs r;
    find_prereqs(r, "quizflow-ops",
                 {"/usr/bin/curl", "/usr/bin/jq", "/usr/bin/psql", "/usr/bin/promtool",
                  "/usr/bin/prometheus"});
    return r;
  }();
  return p;
}
[[maybe_unused]] ::testing::Environment* const kOpsEnvironment =
    ::testing::AddGlobalTestEnvironment(new PrereqsEnvironment(prereqs, "operations test"));

// Base for every suite: fails (not skips) with a clear message when a prerequisite is missing.
class OpsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(prereqs().error.empty()) << prereqs().error; }
  void TearDown() override {
    if (HasFailure()) prereqs().failed = true;
  }
  static const std::string& bin() { return prereqs().bin; }
  static const std::string& db() { return prereqs().db; }
  static const std::string& dir() { return prereqs().dir; }
};

// ---------------------------------------------------------------------------------------------
// /monitoring/stats: the documented fields and their JSON types (spec §6, pipeline/stats.cpp)
// ---------------------------------------------------------------------------------------------

enum class JT { integer, number, boolean, string, array };

const char* jt_name(JT t) {
  switch (t) {
    case JT::integer:
      return "an integer";
    case JT::number:
      return "a number";
    case JT::boolean:
      return "a boolean";
    case JT::string:
      return "a string";
    case JT::array:
      return "an array";
  }
  return "?";
}

const std::vector<std::string> kStages = {"ingest", "validate", "batch", "score", "notify"};

const std::vector<std::pair<std::string, JT>>& stats_schema() {
  static const std::vector<std::pair<std::string, JT>> s = [] {
    std::vector<std::pair<std::string, JT>> v = {{"status", JT::string}, {"uptime_s", JT::integer}};
    for (const auto& st : kStages) {
      const std::string p = "stages." + st + ".";
      for (const char* f : {"backlog", "in_flight", "processed", "rejected", "failed"})
        v.emplace_back(p + f, JT::integer);
      v.emplace_back(p + "oldest_wait_ms", JT::number);
      v.emplace_back(p + "latency_ms.p50", JT::number);
      v.emplace_back(p + "latency_ms.p99", JT::number);
      v.emplace_back(p + "latency_ms.sum", JT::number);
      v.emplace_back(p + "latency_ms.count", JT::integer);
    }
    for (const char* f : {"queue_size", "total_processed", "failed", "num_workers"})
      v.emplace_back(std::string("message_queue.") + f, JT::integer);
    v.emplace_back("message_queue.running", JT::boolean);
    for (const char* f :
         {"pool_size", "max_overflow", "checked_out_connections", "overflow_connections",
          "total_connections", "wait_count", "timeouts", "discarded"})
      v.emplace_back(std::string("database_pool.") + f, JT::integer);
    v.emplace_back("database_pool.wait_ms_p99", JT::number);
    for (const char* f : {"committed", "failed", "rows", "pending_events"})
      v.emplace_back(std::string("batches.") + f, JT::integer);
    v.emplace_back("batches.last_commit_ms", JT::number);
    v.emplace_back("batches.commit_ms.p50", JT::number);
    v.emplace_back("batches.commit_ms.p99", JT::number);
    v.emplace_back("batches.commit_ms.sum", JT::number);
    v.emplace_back("batches.commit_ms.count", JT::integer);
    v.emplace_back("batches.largest_pending", JT::array);
    for (const char* f : {"overloaded", "events_in_flight", "max_in_flight", "timed_out",
                          "connections", "connections_refused"})
      v.emplace_back(std::string("http.") + f, JT::integer);
    return v;
  }();
  return s;
}

// Problems with `doc` against stats_schema(): missing fields, wrong types, negative numbers.
std::vector<std::string> schema_problems(const rapidjson::Value& doc) {
  std::vector<std::string> out;
  if (!doc.IsObject()) return {"not a JSON object"};
  for (const auto& [path, t] : stats_schema()) {
    const rapidjson::Value* v = at_path(doc, path);
    if (v == nullptr) {
      out.push_back(path + " is missing");
      continue;
    }
    bool ok = false;
    switch (t) {
      case JT::integer:
        ok = v->IsInt64() || v->IsUint64();  // written without a fraction
        break;
      case JT::number:
        ok = v->IsNumber();
        break;
      case JT::boolean:
        ok = v->IsBool();
        break;
      case JT::string:
        ok = v->IsString();
        break;
      case JT::array:
        ok = v->IsArray();
        break;
    }
    if (!ok)
      out.push_back(path + " is not " + jt_name(t));
    else if (v->IsNumber() && (v->GetDouble() < 0 || !std::isfinite(v->GetDouble())))
      out.push_back(path + " is negative or not finite: " + std::to_string(v->GetDouble()));
  }
  return out;
}

std::string to_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return sb.GetString();
}

std::string join(const std::vector<std::string>& v, const char* sep = "\n  ") {
  std::string s;
  for (const auto& x : v) s += sep + x;
  return s;
}

// Lines of a server's output that are not one log event in `format` (spec §6: "Logs (spdlog) are
// one line per event, plain or JSON"): plain lines start with a timestamp and a level, json lines
// are objects with string ts, level and msg. Returns a description of the first few, or "".
std::string log_format_problems(const std::string& log, const std::string& format, int& lines) {
  static const std::regex plain_re(
      R"(^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:?[0-9]{2}) (trace|debug|info|warn|warning|error|critical) .*$)");
  std::istringstream in(log);
  std::string line, out;
  int bad = 0;
  lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    bool ok = false;
    if (format == "json") {
      const auto j = parse_json(line);
      ok = !j.HasParseError() && j.IsObject() && j.HasMember("ts") && j["ts"].IsString() &&
           j.HasMember("level") && j["level"].IsString() && j.HasMember("msg") &&
           j["msg"].IsString();
    } else {
      ok = std::regex_match(line, plain_re);
    }
    if (!ok && ++bad <= 10) out += "  line " + std::to_string(lines) + ": '" + line + "'\n";
  }
  if (bad == 0) return {};
  return std::to_string(bad) + " of " + std::to_string(lines) +
         " lines of QUIZFLOW_LOG_FORMAT=" + format + " output are not one " + format +
         " log event each" +
         (format == "json" ? " (an object with ts, level and msg)"
                           : " (timestamp, level, message)") +
         ":\n" + out;
}

// The reader of e2e/prometheus.h is what holds /metrics to the format; make sure it does reject
// bad input.
TEST(ExpositionReader, AcceptsGoodTextAndFlagsEachKindOfMistake) {
  const std::string good =
      "# HELP a_total Things.\n# TYPE a_total counter\na_total{stage=\"x\"} 3\n"
      "# HELP b Level.\n# TYPE b gauge\nb 0.5\n"
      "# HELP c Latency.\n# TYPE c summary\nc{quantile=\"0.5\"} 1e-3\nc_sum 2\nc_count 4\n";
  const Exposition e = parse_exposition(good);
  EXPECT_TRUE(e.problems.empty()) << join(e.problems);
  EXPECT_EQ(e.get("a_total{stage=\"x\"}"), std::optional<double>(3));
  EXPECT_EQ(e.get("c_count"), std::optional<double>(4));
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"orphan 1\n", "sample without TYPE"},
      {"# HELP a h\n# TYPE a counter\na 1\n", "counter without _total"},
      {"# HELP a_total h\n# TYPE a_total gauge\na_total 1\n", "gauge named _total"},
      {"# HELP a h\n# TYPE a gauge\na{l=\"v\" 1\n", "unclosed label set"},
      {"# HELP a h\n# TYPE a gauge\na one\n", "value not a number"},
      {"# HELP a h\n# TYPE a gauge\na 1", "no final newline"},
      {"# TYPE a gauge\na 1\n", "no HELP"},
      {"# HELP a h\n# TYPE a gauge\na 1\na 2\n", "duplicate series"},
      {"# HELP a h\n# TYPE a gauge\n# HELP b h\n# TYPE b gauge\na 1\n", "sample out of family"},
      {"# HELP a h\n# TYPE a gauge\na_count 1\n", "_count of a gauge"},
  };
  for (const auto& [text, what] : bad)
    EXPECT_FALSE(parse_exposition(text).problems.empty()) << what << ":\n" << text;
}

// ---------------------------------------------------------------------------------------------
// The shared server of the Operations suite
// ---------------------------------------------------------------------------------------------

constexpr int kPoolSize = 4;
constexpr int kMaxOverflow = 3;
constexpr int kMaxInFlight = 50000;

class Operations : public OpsTest {
 protected:
  static void SetUpTestSuite() {
    if (!prereqs().error.empty()) return;
    server_ = std::make_unique<ServerProcess>(
        bin(), dir(), "ops",
        isolated_env(db(), {{"DB_POOL_SIZE", std::to_string(kPoolSize)},
                            {"DB_MAX_OVERFLOW", std::to_string(kMaxOverflow)},
                            {"QUIZFLOW_MAX_IN_FLIGHT", std::to_string(kMaxInFlight)}}));
    if (std::string err = server_->start(); !err.empty()) {
      setup_error_ = "starting the shared server: " + err + "\n" + tail(server_->log());
      server_.reset();
    }
  }

  static void TearDownTestSuite() {
    if (!server_) return;
    std::string why;
    const auto code = server_->terminate(20s, why);
    if (code != std::optional<int>(0)) {
      std::fprintf(stderr, "the shared server did not stop cleanly: %s\n", why.c_str());
      print_log(*server_);
      prereqs().failed = true;
    }
    server_.reset();
  }

  void SetUp() override {
    OpsTest::SetUp();
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    ASSERT_TRUE(server_ && server_->running()) << "the shared server is not running";
  }

  void TearDown() override {
    OpsTest::TearDown();
    if (HasFailure() && server_) print_log(*server_);
  }

  static uint16_t port() { return server_->port(); }

  // GET /monitoring/stats, parsed; fails the test when it is not a 200 JSON object.
  static rapidjson::Document stats(HttpClient& c) {
    const HttpResponse r = c.request("GET", "/monitoring/stats");
    EXPECT_EQ(r.status, 200) << show(r);
    rapidjson::Document d = parse(r);
    EXPECT_TRUE(!d.HasParseError() && d.IsObject()) << "not a JSON object: " << show(r);
    if (d.HasParseError()) d.Parse("{}");
    return d;
  }

  static Exposition metrics(HttpClient& c, std::string* body = nullptr) {
    const HttpResponse r = c.request("GET", "/metrics");
    EXPECT_EQ(r.status, 200) << show(r);
    const std::string* ct = r.header("content-type");
    EXPECT_TRUE(ct != nullptr && ct->rfind("text/plain", 0) == 0)
        << "Content-Type of /metrics: " << (ct ? *ct : "<none>");
    if (body) *body = r.body;
    return parse_exposition(r.body);
  }

  struct Load {
    int64_t accepted = 0, schema_rejected = 0, unknown_quiz = 0;
  };

  // Creates `quizzes` quizzes and posts `users` × 3 questions answers to each (every answer
  // counts), in requests of 50, plus `bad` answers of a wrong type and `bad` for a quiz that does
  // not exist.
  static Load post_load(HttpClient& c, int quizzes, int users, int bad) {
    Load l;
    std::vector<std::string> items;
    auto flush = [&] {
      if (items.empty()) return;
      const HttpResponse r = c.request("POST", "/v1/answers", batch_json(items));
      EXPECT_EQ(r.status, 200) << show(r);
      const auto d = parse(r);
      l.accepted += int_at(d, "accepted") > 0 ? int_at(d, "accepted") : 0;
      items.clear();
    };
    const int64_t now = wall_ms();
    for (int q = 0; q < quizzes; ++q) {
      const int64_t quiz = next_quiz_id();
      const HttpResponse r = c.request("POST", "/v1/quizzes", open_quiz_json(quiz));
      EXPECT_EQ(r.status, 201) << show(r);
      for (int u = 1; u <= users; ++u) {
        for (int question = 1; question <= 3; ++question) {
          const auto& qs = default_questions()[static_cast<size_t>(question - 1)];
          items.push_back(answer_json({"ops-" + std::to_string(quiz) + "-" + std::to_string(u) +
                                           "-" + std::to_string(question),
                                       quiz, u, question, (u + question) % qs.option_count, now - u,
                                       (u * 37) % qs.time_limit_ms}));
          if (items.size() == 50) flush();
        }
      }
    }
    flush();
    const int64_t nobody = next_quiz_id();  // never created
    for (int i = 0; i < bad; ++i) {
      items.push_back(R"({"event_id":"ops-bad-)" + std::to_string(nobody) + "-" +
                      std::to_string(i) + R"(","quiz_id":1,"user_id":"seven","question_id":1,)" +
                      R"("option_id":0,"answered_at":")" + rfc3339(now) + R"(","elapsed_ms":10})");
      items.push_back(answer_json({"ops-noquiz-" + std::to_string(nobody) + "-" + std::to_string(i),
                                   nobody, 1, 1, 0, now, 10}));
    }
    if (!items.empty()) {
      const HttpResponse r = c.request("POST", "/v1/answers", batch_json(items));
      EXPECT_EQ(r.status, 200) << show(r);
      const auto d = parse(r);
      EXPECT_EQ(int_at(d, "accepted"), 0) << show(r);
      EXPECT_EQ(int_at(d, "rejected"), 2 * bad) << show(r);
      items.clear();
    }
    l.schema_rejected = bad;
    l.unknown_quiz = bad;
    return l;
  }

  // Waits (up to 10 s) until nothing is in flight and every notification of `expected_notified`
  // more answers than in `before` has been delivered. Returns the final stats.
  static rapidjson::Document settle(HttpClient& c, const rapidjson::Document& before,
                                    int64_t expected_notified) {
    rapidjson::Document now;
    poll_until(10s, [&] {
      now = stats(c);
      bool idle = int_at(now, "http.events_in_flight") == 0 &&
                  int_at(now, "batches.pending_events") == 0 &&
                  int_at(now, "message_queue.queue_size") == 0;
      for (const auto& s : kStages) idle = idle && int_at(now, "stages." + s + ".backlog") == 0;
      return idle &&
             int_at(now, "stages.notify.processed") - int_at(before, "stages.notify.processed") >=
                 expected_notified &&
             int_at(now, "message_queue.total_processed") -
                     int_at(before, "message_queue.total_processed") >=
                 expected_notified;
    });
    return now;
  }

  static inline std::unique_ptr<ServerProcess> server_;
  static inline std::string setup_error_;
};

TEST_F(Operations, StatsHaveEveryDocumentedFieldWithItsType) {
  HttpClient c = server_->client();
  const rapidjson::Document s = stats(c);
  const auto problems = schema_problems(s);
  EXPECT_TRUE(problems.empty()) << "GET /monitoring/stats:" << join(problems);
  EXPECT_EQ(str_at(s, "status"), "running");
  // The configuration shows through.
  EXPECT_EQ(int_at(s, "database_pool.pool_size"), kPoolSize) << "DB_POOL_SIZE";
  EXPECT_EQ(int_at(s, "database_pool.max_overflow"), kMaxOverflow) << "DB_MAX_OVERFLOW";
  EXPECT_EQ(int_at(s, "http.max_in_flight"), kMaxInFlight) << "QUIZFLOW_MAX_IN_FLIGHT";
  const rapidjson::Value* running = at_path(s, "message_queue.running");
  EXPECT_TRUE(running && running->IsBool() && running->GetBool()) << "message_queue.running";
  EXPECT_GE(int_at(s, "message_queue.num_workers"), 1);
  EXPECT_LE(int_at(s, "database_pool.total_connections"), kPoolSize + kMaxOverflow);
  EXPECT_LE(int_at(s, "database_pool.overflow_connections"), kMaxOverflow);
}

TEST_F(Operations, StatsAndMetricsMoveUnderLoad) {
  HttpClient c = server_->client();
  const rapidjson::Document before = settle(c, stats(c), 0);
  const Exposition m_before = metrics(c);

  const auto t0 = std::chrono::steady_clock::now();
  const Load l = post_load(c, 2, 50, 10);  // 300 answers that count, 20 rejected
  ASSERT_EQ(l.accepted, 300);
  const rapidjson::Document after = settle(c, before, l.accepted);
  const Exposition m_after = metrics(c);
  std::fprintf(stderr, "load of %d answers settled in %d ms\n", static_cast<int>(l.accepted),
               static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now() - t0)
                                    .count()));

  const auto problems = schema_problems(after);
  EXPECT_TRUE(problems.empty()) << "after the load:" << join(problems);
  auto delta = [&](const std::string& path) { return int_at(after, path) - int_at(before, path); };
  const std::string trace = "\nbefore: " + to_json(before) + "\nafter:  " + to_json(after);
  // Every stage moved, by exactly what was sent (each answer is new and counts).
  const int64_t n = l.accepted;
  EXPECT_EQ(delta("stages.ingest.processed"), n + l.unknown_quiz) << trace;
  EXPECT_EQ(delta("stages.ingest.rejected"), l.schema_rejected) << trace;
  EXPECT_EQ(delta("stages.validate.processed"), n) << trace;
  EXPECT_EQ(delta("stages.validate.rejected"), l.unknown_quiz) << trace;
  EXPECT_EQ(delta("stages.batch.processed"), n) << trace;
  EXPECT_EQ(delta("stages.score.processed"), n) << trace;
  EXPECT_GE(delta("stages.notify.processed"), n) << "one answer_result per counted answer" << trace;
  for (const auto& s : kStages) {
    EXPECT_EQ(delta("stages." + s + ".failed"), 0) << s << trace;
    EXPECT_GT(delta("stages." + s + ".latency_ms.count"), 0) << s << trace;
    EXPECT_EQ(int_at(after, "stages." + s + ".backlog"), 0) << s << " idle" << trace;
  }
  EXPECT_GE(delta("batches.committed"), 2) << "two quizzes: at least two batches" << trace;
  EXPECT_LE(delta("batches.committed"), n) << "never one commit per answer" << trace;
  EXPECT_EQ(delta("batches.rows"), n) << trace;
  EXPECT_EQ(delta("batches.failed"), 0) << trace;
  EXPECT_EQ(delta("batches.commit_ms.count"), delta("batches.committed")) << trace;
  EXPECT_GE(delta("message_queue.total_processed"), n)
      << "notifications delivered to (mock) Kafka" << trace;
  EXPECT_EQ(delta("message_queue.failed"), 0) << trace;
  EXPECT_EQ(int_at(after, "http.events_in_flight"), 0) << trace;
  EXPECT_GE(int_at(after, "database_pool.total_connections"), 1) << trace;

  // /metrics moved with it, and no counter went backwards.
  EXPECT_TRUE(m_before.problems.empty()) << join(m_before.problems);
  EXPECT_TRUE(m_after.problems.empty()) << join(m_after.problems);
  for (const auto& [key, v] : m_before.series) {
    const std::string fam = key.substr(0, key.find('{'));
    auto t = m_before.types.find(fam);
    if (t == m_before.types.end() || t->second != "counter") continue;
    const auto now = m_after.get(key);
    ASSERT_TRUE(now.has_value()) << key << " disappeared from /metrics";
    EXPECT_GE(*now, v) << "counter " << key << " went backwards";
  }
  for (const auto& s : kStages) {
    const std::string key = "quizflow_stage_processed_total{stage=\"" + s + "\"}";
    EXPECT_GT(m_after.get(key).value_or(-1), m_before.get(key).value_or(0)) << key;
  }
  EXPECT_GT(m_after.get("quizflow_batches_committed_total").value_or(-1),
            m_before.get("quizflow_batches_committed_total").value_or(0));
}

TEST_F(Operations, RunbookJqQueriesWorkWithRealCurlAndJq) {
  // The seed runbook: curl -s http://host:port/monitoring/stats | jq '.message_queue' (and
  // '.database_pool'), run by a shell exactly as an operator types it.
  const std::string url = "http://127.0.0.1:" + std::to_string(port()) + "/monitoring/stats";
  const std::vector<std::pair<std::string, std::vector<std::string>>> queries = {
      {".message_queue", {"queue_size", "total_processed", "failed", "running", "num_workers"}},
      {".database_pool",
       {"pool_size", "max_overflow", "checked_out_connections", "overflow_connections",
        "total_connections", "wait_count", "wait_ms_p99"}},
      {".stages", {"ingest", "validate", "batch", "score", "notify"}},
      {".batches", {"committed", "rows", "last_commit_ms", "commit_ms"}},
  };
  for (const auto& [q, fields] : queries) {
    SCOPED_TRACE(q);
    int rc = -1;
    const std::string cmd = "curl -s --max-time 10 " + url + " | jq '" + q + "' 2>&1";
    const std::string out = shell(cmd, rc);
    EXPECT_EQ(rc, 0) << cmd << "\n" << out;
    const auto d = parse_json(out);
    ASSERT_TRUE(!d.HasParseError() && d.IsObject()) << cmd << " printed:\n" << out;
    for (const auto& f : fields) EXPECT_TRUE(d.HasMember(f.c_str())) << f << " in:\n" << out;
  }
  // A scalar the way a runbook line reads it.
  int rc = -1;
  const std::string out =
      shell("curl -s --max-time 10 " + url + " | jq -r '.database_pool.pool_size'", rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, std::to_string(kPoolSize) + "\n");
}

TEST_F(Operations, MetricsPassPromtoolAndAgreeWithStats) {
  HttpClient c = server_->client();
  // Some traffic of its own, so the figures compared below are not all zero.
  const rapidjson::Document before = settle(c, stats(c), 0);
  const Load l = post_load(c, 1, 10, 2);
  settle(c, before, l.accepted);

  std::string body;
  const Exposition m = metrics(c, &body);
  EXPECT_TRUE(m.problems.empty()) << "/metrics is not well-formed:" << join(m.problems) << "\n"
                                  << body;

  const std::string file = dir() + "/metrics.txt";
  write_file(file, body);
  const CommandResult pt =
      run_command({"/usr/bin/promtool", "check", "metrics"}, {}, dir(), 30s, file);
  EXPECT_EQ(pt.exit_code, 0) << "promtool check metrics < /metrics: " << pt.show();
  EXPECT_EQ(pt.all(), "") << "promtool found lint problems: " << pt.show();

  EXPECT_EQ(m.get("quizflow_up"), std::optional<double>(1)) << body;
  for (const auto& s : kStages)
    EXPECT_TRUE(m.get("quizflow_stage_processed_total{stage=\"" + s + "\"}").has_value())
        << s << "\n"
        << body;

  // Figures agree with /monitoring/stats while idle: read stats, metrics, stats; compare when
  // the two stats readings are equal.
  const std::vector<std::pair<std::string, std::string>> pairs = [] {
    std::vector<std::pair<std::string, std::string>> p = {
        {"quizflow_batches_committed_total", "batches.committed"},
        {"quizflow_batches_failed_total", "batches.failed"},
        {"quizflow_batch_rows_total", "batches.rows"},
        {"quizflow_batch_commit_seconds_count", "batches.commit_ms.count"},
        {"quizflow_producer_delivered_total", "message_queue.total_processed"},
        {"quizflow_producer_failed_total", "message_queue.failed"},
        {"quizflow_producer_queue_messages", "message_queue.queue_size"},
        {"quizflow_db_pool_size", "database_pool.pool_size"},
        {"quizflow_db_pool_max_overflow", "database_pool.max_overflow"},
        {"quizflow_db_pool_waits_total", "database_pool.wait_count"},
        {"quizflow_db_pool_timeouts_total", "database_pool.timeouts"},
        {"quizflow_db_pool_discarded_total", "database_pool.discarded"},
        {"quizflow_http_overloaded_total", "http.overloaded"},
        {"quizflow_events_in_flight", "http.events_in_flight"},
        {"quizflow_events_in_flight_limit", "http.max_in_flight"},
        {"quizflow_http_timed_out_total", "http.timed_out"},
        {"quizflow_http_connections_refused_total", "http.connections_refused"},
    };
    for (const auto& s : kStages) {
      const std::string l = "{stage=\"" + s + "\"}";
      const std::string j = "stages." + s + ".";
      p.emplace_back("quizflow_stage_processed_total" + l, j + "processed");
      p.emplace_back("quizflow_stage_rejected_total" + l, j + "rejected");
      p.emplace_back("quizflow_stage_failed_total" + l, j + "failed");
      p.emplace_back("quizflow_stage_backlog" + l, j + "backlog");
      p.emplace_back("quizflow_stage_latency_seconds_count" + l, j + "latency_ms.count");
    }
    return p;
  }();
  bool compared = false;
  std::string last_diff;
  for (int attempt = 0; attempt < 10 && !compared; ++attempt) {
    const rapidjson::Document s1 = stats(c);
    std::string text;
    const Exposition mm = metrics(c, &text);
    const rapidjson::Document s2 = stats(c);
    bool stable = true;
    for (const auto& [metric, path] : pairs)
      stable = stable && num_at(s1, path) == num_at(s2, path);
    if (!stable) {
      std::this_thread::sleep_for(200ms);
      continue;
    }
    compared = true;
    for (const auto& [metric, path] : pairs) {
      EXPECT_TRUE(num_at(s1, path).has_value()) << path << " missing from /monitoring/stats";
      EXPECT_EQ(mm.get(metric), num_at(s1, path))
          << metric << " in /metrics vs " << path << " in /monitoring/stats\n"
          << text;
    }
    EXPECT_GT(mm.get("quizflow_batches_committed_total").value_or(0), 0);
  }
  EXPECT_TRUE(compared) << "/monitoring/stats never stood still for a comparison";
}

TEST_F(Operations, RealPrometheusScrapesTheServer) {
  PrometheusProcess prom(dir(), port());
  std::string raw;
  const bool up = poll_until(30s, [&] {
    if (prom.exited()) return true;
    return single_value(prom.query("quizflow_up", raw)) == std::optional<std::string>("1");
  });
  ASSERT_FALSE(prom.exited()) << "prometheus exited:\n" << prom.log();
  ASSERT_TRUE(up) << "Prometheus never had quizflow_up == 1 within 30 s; last answer: " << raw
                  << "\nprometheus log:\n"
                  << prom.log();

  EXPECT_EQ(single_value(prom.query("up{job=\"quizflow\"}", raw)), std::optional<std::string>("1"))
      << raw;
  const rapidjson::Document d = prom.query("quizflow_stage_processed_total", raw);
  const rapidjson::Value* res = at_path(d, "data.result");
  ASSERT_TRUE(res != nullptr && res->IsArray()) << raw;
  std::set<std::string> stages;
  for (const auto& series : res->GetArray())
    if (const rapidjson::Value* st = at_path(series, "metric.stage"); st && st->IsString())
      stages.insert(st->GetString());
  EXPECT_EQ(stages, std::set<std::string>(kStages.begin(), kStages.end())) << raw;

  // The target reports no scrape error (e.g. a parse error of the exposition).
  HttpClient pc("127.0.0.1", prom.port(), 5s);
  const HttpResponse t = pc.request("GET", "/api/v1/targets?state=active");
  const rapidjson::Document td = parse(t);
  const rapidjson::Value* targets = at_path(td, "data.activeTargets");
  ASSERT_TRUE(targets != nullptr && targets->IsArray() && targets->Size() == 1) << show(t);
  EXPECT_EQ(str_at((*targets)[0], "health"), "up") << show(t);
  EXPECT_EQ(str_at((*targets)[0], "lastError"), "") << show(t);
  if (HasFailure()) std::fprintf(stderr, "prometheus log:\n%s\n", prom.log().c_str());
}

// ---------------------------------------------------------------------------------------------
// Secrets (spec §3 token never logged, §6 logs never contain a password or token, §7 check-config)
// ---------------------------------------------------------------------------------------------

class Secrets : public OpsTest {
 protected:
  // Every place where `secret` was found in `text`, described.
  static std::string find_leak(const std::string& text, const std::string& secret,
                               const std::string& where) {
    const auto pos = text.find(secret);
    if (pos == std::string::npos) return {};
    const size_t from = pos > 200 ? pos - 200 : 0;
    return where + " contains the secret '" + secret + "': …" + text.substr(from, 400) + "…\n";
  }

  void run_server_and_look(const std::string& format) {
    const std::string password = "S3cretPw-" + random_hex(12);
    const std::string token = "tok-" + random_hex(16);
    PgUrl u = PgUrl::parse(db());
    if (u.user.empty()) u.user = "quizflow";
    u.password = password;
    const std::string url = u.str();
    PgUrl masked_u = u;
    masked_u.password = "***";
    const Env env = isolated_env(url, {{"QUIZFLOW_API_TOKEN", token},
                                       {"QUIZFLOW_LOG_FORMAT", format},
                                       {"QUIZFLOW_LOG_LEVEL", "debug"}});
    ServerProcess s(bin(), dir(), "secrets-" + format, env);
    const std::string err = s.start();
    ASSERT_TRUE(err.empty()) << err << "\n" << tail(s.log());

    std::string leaks;
    {
      HttpClient c = s.client();
      const HttpClient::Headers good = {{"Authorization", "Bearer " + token}};
      const HttpClient::Headers wrong = {{"Authorization", "Bearer wrong-" + random_hex(8)}};
      const int64_t quiz = next_quiz_id();
      HttpResponse r = c.request("POST", "/v1/quizzes", open_quiz_json(quiz), wrong);
      EXPECT_EQ(r.status, 401) << show(r);
      leaks += find_leak(r.body, token, "the 401 body");
      r = c.request("POST", "/v1/quizzes", open_quiz_json(quiz), good);
      EXPECT_EQ(r.status, 201) << show(r);
      const std::string a =
          answer_json({"sec-" + std::to_string(quiz), quiz, 1, 1, 2, wall_ms(), 5});
      r = c.request("POST", "/v1/answers", a, wrong);
      EXPECT_EQ(r.status, 401) << show(r);
      r = c.request("POST", "/v1/answers", a);
      EXPECT_EQ(r.status, 401) << "no token: " << show(r);
      r = c.request("POST", "/v1/answers", a, good);
      EXPECT_EQ(r.status, 200) << show(r);
      EXPECT_EQ(int_at(parse(r), "accepted"), 1) << show(r);
      r = c.request("POST", "/v1/answers", "{\"event_id\":", good);
      EXPECT_EQ(r.status, 400) << show(r);
      leaks += find_leak(r.body, token, "the 400 body");
      r = c.request("GET", "/v1/nothing-here", {}, good);  // a miss, logged or not

      for (const char* path : {"/monitoring/stats", "/metrics", "/health"}) {
        r = c.request("GET", path, {}, good);
        EXPECT_EQ(r.status, 200) << path << ": " << show(r);
        leaks += find_leak(r.body, password, std::string("GET ") + path);
        leaks += find_leak(r.body, token, std::string("GET ") + path);
        for (const auto& [k, v] : r.headers) {
          leaks += find_leak(v, password, std::string(path) + " header " + k);
          leaks += find_leak(v, token, std::string(path) + " header " + k);
        }
      }
    }

    // check-config with the same environment shows the masked forms.
    const CommandResult cc = run_command({bin(), "check-config"}, env, dir());
    EXPECT_EQ(cc.exit_code, 0) << cc.show();
    leaks += find_leak(cc.all(), password, "check-config output");
    leaks += find_leak(cc.all(), token, "check-config output");
    const auto d = parse_json(cc.out);
    EXPECT_TRUE(!d.HasParseError() && d.IsObject())
        << "check-config did not print JSON: " << cc.show();
    if (!d.HasParseError() && d.IsObject()) {
      const std::string shown_url = str_at(d, "DATABASE_URL");
      EXPECT_EQ(shown_url, masked_u.str()) << "DATABASE_URL with the password masked";
      const std::string shown_token = str_at(d, "QUIZFLOW_API_TOKEN");
      EXPECT_FALSE(shown_token.empty()) << "the token is set, check-config shows it masked";
      EXPECT_NE(shown_token.find('*'), std::string::npos)
          << "QUIZFLOW_API_TOKEN shown as '" << shown_token << "'";
    }

    std::string why;
    const auto code = s.terminate(20s, why);
    EXPECT_EQ(code, std::optional<int>(0)) << why;
    const std::string log = s.log();
    leaks += find_leak(log, password, "the server output (" + format + ")");
    leaks += find_leak(log, token, "the server output (" + format + ")");
    EXPECT_TRUE(leaks.empty()) << leaks;
    EXPECT_NE(log.find("***"), std::string::npos)
        << "the start-up line shows the masked database URL";

    // One line per event; in json every line is an object with ts, level and msg.
    int lines = 0;
    const std::string bad = log_format_problems(log, format, lines);
    EXPECT_TRUE(bad.empty()) << bad;
    EXPECT_GT(lines, 0) << "the server logged nothing";
    if (HasFailure()) print_log(s);
  }
};

TEST_F(Secrets, NeverShownWithPlainLogs) { run_server_and_look("plain"); }

TEST_F(Secrets, NeverShownWithJsonLogs) { run_server_and_look("json"); }

TEST_F(Secrets, FailedStartDoesNotPrintThePassword) {
  for (const std::string format : {"plain", "json"}) {
    SCOPED_TRACE(format);
    const std::string password = "S3cretPw-" + random_hex(12);
    PgUrl u = PgUrl::parse(db());
    if (u.user.empty()) u.user = "quizflow";
    u.password = password;
    u.host = "127.0.0.1";
    u.port = std::to_string(free_port());  // nothing listens there
    ServerProcess s(bin(), dir(), "closed-db-" + format,
                    isolated_env(u.str(), {{"QUIZFLOW_LOG_FORMAT", format}}));
    const auto st = s.run_until_exit(30s);
    const std::string out = s.log();
    ASSERT_TRUE(st.has_value())
        << "with DATABASE_URL at a closed port the server was still running "
           "after 30 s\n"
        << tail(out);
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) != 0)
        << "expected a non-zero exit, got " << describe_status(st) << "\n"
        << tail(out);
    EXPECT_FALSE(out.empty()) << "the server gave no reason for failing to start";
    EXPECT_EQ(out.find(password), std::string::npos)
        << "the password appears in the error output:\n"
        << out;
  }
}

TEST_F(Secrets, CheckConfigMasksEveryUrlForm) {
  const std::string pw = "S3cretPw-" + random_hex(12);
  const PgUrl base = PgUrl::parse(db());
  const std::vector<std::string> forms = {
      "postgresql://quizflow:" + pw + "@" + base.host + ":" + base.port + "/quizflow",
      "postgres://quizflow:" + pw + "@" + base.host + "/quizflow?sslmode=disable",
      "postgresql://" + base.host + ":" + base.port + "/quizflow?user=quizflow&password=" + pw,
      "host=" + base.host + " port=" + base.port + " user=quizflow password=" + pw +
          " dbname=quizflow",
  };
  for (const auto& url : forms) {
    const CommandResult r =
        run_command({bin(), "check-config"}, isolated_env(url), dir(), std::chrono::seconds(10));
    EXPECT_EQ(r.exit_code, 0) << url << "\n" << r.show();
    EXPECT_EQ(r.all().find(pw), std::string::npos)
        << "check-config shows the password of\n  " << url << "\n"
        << r.show();
  }
}

// ---------------------------------------------------------------------------------------------
// Configuration errors name the key (spec §7)
// ---------------------------------------------------------------------------------------------

class ConfigErrors : public OpsTest {};

TEST_F(ConfigErrors, BadValuesExitThreeNamingTheKey) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"BATCH_MAX_SIZE", "abc"},
      {"DB_POOL_SIZE", "0"},
      {"QUIZFLOW_HTTP_ADDR", "nonsense"},
      {"QUIZFLOW_LOG_FORMAT", "xml"},
  };
  for (const auto& [key, value] : bad) {
    SCOPED_TRACE(key + "=" + value);
    const CommandResult r =
        run_command({bin(), "check-config"}, isolated_env(db(), {{key, value}}), dir(), 10s);
    EXPECT_EQ(r.exit_code, 3) << r.show();
    EXPECT_NE(r.all().find(key), std::string::npos) << "the output does not name " << key << "\n"
                                                    << r.show();
    EXPECT_NE(r.all().find("config key " + key), std::string::npos) << r.show();
  }
}

// The smallest pool the configuration allows is accepted by every command but a replay, which
// needs a connection per quiz rebuilt at once (2 by default) and one more: it says so.
TEST_F(ConfigErrors, TheSmallestPoolIsAcceptedAndReplaysSayWhatTheyNeed) {
  const auto env =
      isolated_env(db(), {{"DB_POOL_SIZE", "1"}, {"DB_MAX_OVERFLOW", "0"}, {"DB_WRITERS", "1"}});
  const CommandResult cc = run_command({bin(), "check-config"}, env, dir(), 10s);
  EXPECT_EQ(cc.exit_code, 0) << cc.show();
  const CommandResult dry = run_command({bin(), "replay", "--dry-run"}, env, dir(), 10s);
  EXPECT_EQ(dry.exit_code, 2) << dry.show();
  EXPECT_NE(dry.all().find("--jobs 2 needs a connection each and one more"), std::string::npos)
      << dry.show();
  const auto two = isolated_env(db(), {{"DB_POOL_SIZE", "2"}, {"DB_MAX_OVERFLOW", "0"}});
  const CommandResult one =
      run_command({bin(), "replay", "--dry-run", "--jobs", "1"}, two, dir(), 120s);
  EXPECT_TRUE(one.exit_code == 0 || one.exit_code == 10) << one.show();
}

TEST_F(ConfigErrors, UnknownKeyInTheFileIsNamed) {
  const std::string file = dir() + "/unknown-key.json";
  write_file(file, R"({"batch_max_size": 10, "batch_max_sise": 20})");
  const CommandResult r =
      run_command({bin(), "check-config", "--config", file}, isolated_env(db()), dir(), 10s);
  EXPECT_EQ(r.exit_code, 3) << r.show();
  EXPECT_NE(r.all().find("batch_max_sise"), std::string::npos) << r.show();
}

TEST_F(ConfigErrors, EnvironmentWinsOverTheFile) {
  const std::string file = dir() + "/batch.json";
  write_file(file, R"({"batch_max_size": 10})");
  auto shown = [](const CommandResult& r) -> std::string {
    const auto d = parse_json(r.out);
    const rapidjson::Value* v = d.HasParseError() ? nullptr : at_path(d, "BATCH_MAX_SIZE");
    if (v == nullptr) return "<missing>";
    if (v->IsString()) return v->GetString();
    if (v->IsInt64()) return std::to_string(v->GetInt64());
    return "<other>";
  };
  CommandResult r =
      run_command({bin(), "check-config", "--config", file}, isolated_env(db()), dir(), 10s);
  EXPECT_EQ(r.exit_code, 0) << r.show();
  EXPECT_EQ(shown(r), "10") << "the file applies: " << r.show();
  r = run_command({bin(), "check-config", "--config", file},
                  isolated_env(db(), {{"BATCH_MAX_SIZE", "20"}}), dir(), 10s);
  EXPECT_EQ(r.exit_code, 0) << r.show();
  EXPECT_EQ(shown(r), "20") << "the environment wins: " << r.show();
}

// ---------------------------------------------------------------------------------------------
// Health (spec §3 GET /health)
// ---------------------------------------------------------------------------------------------

class Health : public OpsTest {};

TEST_F(Health, UnreachableKafkaIs503WithAReason) {
  const std::string kafka = "127.0.0.1:" + std::to_string(free_port());  // nothing listens there
  ServerProcess s(bin(), dir(), "kafka-down", isolated_env(db(), {{"KAFKA_BROKERS", kafka}}));
  const std::string err = s.start(/*require_healthy=*/false);
  ASSERT_TRUE(err.empty()) << "with KAFKA_BROKERS=" << kafka
                           << " the server must still start: " << err << "\n"
                           << tail(s.log());
  HttpResponse last;
  HttpClient c = s.client(5s);
  const bool unhealthy = poll_until(15s, [&] {
    last = c.request("GET", "/health");
    const auto d = parse(last);
    const std::string k = str_at(d, "checks.kafka");
    return last.status == 503 && k != "ok" && k != "<missing>" && k != "<not a string>" &&
           !k.empty();
  });
  EXPECT_TRUE(unhealthy) << "GET /health with Kafka unreachable, after 15 s: " << show(last);
  const auto d = parse(last);
  EXPECT_EQ(str_at(d, "status"), "unhealthy") << show(last);
  EXPECT_EQ(str_at(d, "checks.database"), "ok") << show(last);
  EXPECT_EQ(str_at(d, "checks.engine"), "ok") << show(last);
  if (HasFailure()) print_log(s);
}

TEST_F(Health, DatabaseOutageIs503AndRecovers) {
  ScratchDatabase sdb(db(), dir());
  ASSERT_TRUE(sdb.error().empty()) << sdb.error();
  ServerProcess s(bin(), dir(), "db-outage",
                  isolated_env(sdb.url(), {{"DB_POOL_SIZE", "2"},
                                           {"DB_MAX_OVERFLOW", "2"},
                                           {"DB_CHECKOUT_TIMEOUT_MS", "2000"}}));
  const std::string err = s.start();
  ASSERT_TRUE(err.empty()) << err << "\n" << tail(s.log());
  HttpClient c = s.client(15s);
  const int64_t quiz = next_quiz_id();
  HttpResponse r = c.request("POST", "/v1/quizzes", open_quiz_json(quiz));
  ASSERT_EQ(r.status, 201) << show(r);
  r = c.request("POST", "/v1/answers",
                answer_json({"out-" + std::to_string(quiz) + "-1", quiz, 1, 1, 2, wall_ms(), 5}));
  ASSERT_EQ(r.status, 200) << show(r);
  ASSERT_EQ(int_at(parse(r), "accepted"), 1) << show(r);
  r = c.request("GET", "/health");
  ASSERT_EQ(r.status, 200) << show(r);

  // PostgreSQL refuses the database and drops every session on it. (CONNECTION LIMIT 0 alone does
  // not bind a superuser, which the test role is; ALLOW_CONNECTIONS false binds everyone.)
  CommandResult a = sdb.admin("ALTER DATABASE " + sdb.name() + " CONNECTION LIMIT 0");
  ASSERT_EQ(a.exit_code, 0) << a.show();
  a = sdb.admin("ALTER DATABASE " + sdb.name() + " ALLOW_CONNECTIONS false");
  ASSERT_EQ(a.exit_code, 0) << a.show();
  a = sdb.admin("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '" +
                sdb.name() + "'");
  ASSERT_EQ(a.exit_code, 0) << a.show();
  HttpResponse last;
  const bool down = poll_until(15s, [&] {
    last = c.request("GET", "/health");
    const std::string why = str_at(parse(last), "checks.database");
    return last.status == 503 && why != "ok" && why != "<missing>" && why != "<not a string>" &&
           !why.empty();
  });
  EXPECT_TRUE(down) << "GET /health with the database unreachable, after 15 s: " << show(last);
  EXPECT_EQ(str_at(parse(last), "status"), "unhealthy") << show(last);
  EXPECT_EQ(str_at(parse(last), "checks.kafka"), "ok") << show(last);

  // An answer arriving during the outage cannot be committed, so it must not be acknowledged as
  // accepted (§5 durable ack): a per-item rejection or a 503 is fine, and the server stays up.
  r = c.request(
      "POST", "/v1/answers",
      answer_json({"out-" + std::to_string(quiz) + "-during", quiz, 3, 1, 2, wall_ms(), 5}));
  EXPECT_TRUE(r.status == 503 || (r.status == 200 && int_at(parse(r), "accepted") == 0))
      << "an answer posted while the database is unreachable: " << show(r);
  ASSERT_TRUE(s.running()) << "the server died during the outage";

  a = sdb.admin("ALTER DATABASE " + sdb.name() + " ALLOW_CONNECTIONS true");
  ASSERT_EQ(a.exit_code, 0) << a.show();
  a = sdb.admin("ALTER DATABASE " + sdb.name() + " CONNECTION LIMIT -1");
  ASSERT_EQ(a.exit_code, 0) << a.show();
  const bool back = poll_until(15s, [&] {
    last = c.request("GET", "/health");
    return last.status == 200;
  });
  EXPECT_TRUE(back) << "GET /health 15 s after the database came back: " << show(last);

  // The broken connections were replaced: an answer posted now is stored.
  r = c.request("POST", "/v1/answers",
                answer_json({"out-" + std::to_string(quiz) + "-2", quiz, 2, 1, 2, wall_ms(), 5}));
  EXPECT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(int_at(parse(r), "accepted"), 1) << "the first answer after the outage: " << show(r);
  r = c.request("GET", "/monitoring/stats");
  EXPECT_GE(int_at(parse(r), "database_pool.discarded"), 1)
      << "broken connections are counted as discarded: " << show(r);

  std::string why;
  const auto code = s.terminate(20s, why);
  EXPECT_EQ(code, std::optional<int>(0)) << why;
  if (HasFailure()) print_log(s);
}

// ---------------------------------------------------------------------------------------------
// Log format (spec §6: one line per event, plain or JSON), including what the libraries print
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// quizflow export: the event log as JSON lines, the way an operator archives a quiz
// ---------------------------------------------------------------------------------------------

class Export : public OpsTest {
 protected:
  // Two quizzes with three answers each, stored through a server that has stopped again.
  std::pair<int64_t, int64_t> answered_quizzes(const ScratchDatabase& sdb) {
    const int64_t q1 = next_quiz_id(), q2 = next_quiz_id();
    ServerProcess s(bin(), dir(), "export", isolated_env(sdb.url()));
    const std::string err = s.start();
    EXPECT_TRUE(err.empty()) << err << "\n" << tail(s.log());
    HttpClient c = s.client(15s);
    for (int64_t q : {q1, q2}) {
      HttpResponse r = c.request("POST", "/v1/quizzes", open_quiz_json(q));
      EXPECT_EQ(r.status, 201) << show(r);
    }
    for (int u = 1; u <= 3; ++u) {
      for (int64_t q : {q1, q2}) {
        const HttpResponse r =
            c.request("POST", "/v1/answers",
                      answer_json({"ex-" + std::to_string(q) + "-" + std::to_string(u), q, u, 1, 2,
                                   wall_ms(), 5}));
        EXPECT_EQ(r.status, 200) << show(r);
      }
    }
    return {q1, q2};
  }
};

TEST_F(Export, WritesEveryAcceptedAnswerAsALineAndOnlyDataOnStdout) {
  ScratchDatabase sdb(db(), dir());
  ASSERT_TRUE(sdb.error().empty()) << sdb.error();
  const auto [q1, q2] = answered_quizzes(sdb);
  ASSERT_FALSE(HasFailure());
  const std::string file = dir() + "/export-" + random_hex(6) + ".jsonl";
  CommandResult r = run_command({bin(), "export", "--to", file}, isolated_env(sdb.url()), dir());
  ASSERT_EQ(r.exit_code, 0) << r.show();
  EXPECT_EQ(r.out, "") << "export --to writes nothing on stdout";
  EXPECT_NE(r.err.find("6 events of 2 quizzes"), std::string::npos) << r.show();
  std::ifstream in(file);
  ASSERT_TRUE(in.good()) << file << " was not written";
  EXPECT_FALSE(std::ifstream(file + ".partial").good()) << "the .partial file was left behind";
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 8u);  // per quiz: its quiz line, then its three answers
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto d = parse_json(lines[i]);
    ASSERT_TRUE(!d.HasParseError() && d.IsObject()) << lines[i];
    if (i % 4 == 0) {
      EXPECT_EQ(int_at(d, "quiz.quiz_id"), i == 0 ? q1 : q2) << lines[i];
      EXPECT_EQ(str_at(d, "state"), "open") << lines[i];
      continue;
    }
    for (const char* f : {"event_id", "quiz_id", "user_id", "question_id", "option_id",
                          "answered_at", "elapsed_ms"})
      EXPECT_TRUE(d.HasMember(f)) << f << " in " << lines[i];
  }
  EXPECT_NE(lines[1].find("\"ex-" + std::to_string(q1) + "-1\""), std::string::npos)
      << "quiz by quiz, by event_id: " << lines[1];

  // One quiz, to standard output: data only there, the summary on standard error.
  r = run_command({bin(), "export", "--quiz", std::to_string(q2)}, isolated_env(sdb.url()), dir());
  ASSERT_EQ(r.exit_code, 0) << r.show();
  size_t n = 0;
  for (size_t at = 0; (at = r.out.find('\n', at)) != std::string::npos; ++at) ++n;
  EXPECT_EQ(n, 4u) << r.out;
  EXPECT_EQ(r.out.find("info"), std::string::npos) << "a log line on stdout:\n" << r.out;
  EXPECT_NE(r.err.find("3 events of 1 quizzes"), std::string::npos) << r.show();

  r = run_command({bin(), "export", "--quiz", "x"}, isolated_env(sdb.url()), dir());
  EXPECT_EQ(r.exit_code, 2) << r.show();
}

// quizflow replay: the stored standings agree with the log (exit 0); a damaged one is reported
// as stored -> replayed by --dry-run (exit 10) and left as it is; replay puts it right.
TEST_F(Export, ReplayFindsADamagedStandingAndPutsItRight) {
  ScratchDatabase sdb(db(), dir());
  ASSERT_TRUE(sdb.error().empty()) << sdb.error();
  const auto [q1, q2] = answered_quizzes(sdb);
  ASSERT_FALSE(HasFailure());
  CommandResult r = run_command({bin(), "replay", "--dry-run"}, isolated_env(sdb.url()), dir());
  ASSERT_EQ(r.exit_code, 0) << r.show();
  EXPECT_NE(r.out.find("6 events of 2 quizzes"), std::string::npos) << r.show();
  EXPECT_NE(r.out.find("differ: 0 players"), std::string::npos) << r.show();

  // On the scratch database itself (sdb.admin runs on the maintenance database).
  const CommandResult a =
      psql(sdb.url(),
           "UPDATE standings SET score = score + 7 WHERE quiz_id = " + std::to_string(q2) +
               " AND user_id = 2",
           dir());
  ASSERT_EQ(a.exit_code, 0) << a.show();
  r = run_command({bin(), "replay", "--dry-run"}, isolated_env(sdb.url()), dir());
  EXPECT_EQ(r.exit_code, 10) << r.show();
  EXPECT_NE(r.out.find("differ: 1 players in 1 quizzes"), std::string::npos) << r.show();
  EXPECT_NE(r.out.find("quiz " + std::to_string(q2) + " player 2: score "), std::string::npos)
      << r.show();
  const CommandResult again = run_command(
      {bin(), "replay", "--dry-run", "--quiz", std::to_string(q2)}, isolated_env(sdb.url()), dir());
  EXPECT_EQ(again.exit_code, 10) << "the dry run changed the stored standing\n" << again.show();
  r = run_command({bin(), "replay", "--dry-run", "--quiz", std::to_string(q1)},
                  isolated_env(sdb.url()), dir());
  EXPECT_EQ(r.exit_code, 0) << r.show();
  // The rebuild puts the damaged standing right (exit 10: something changed), then agrees.
  r = run_command({bin(), "replay"}, isolated_env(sdb.url()), dir());
  EXPECT_EQ(r.exit_code, 10) << r.show();
  EXPECT_NE(r.out.find("changed: 1 players in 1 quizzes"), std::string::npos) << r.show();
  r = run_command({bin(), "replay", "--dry-run"}, isolated_env(sdb.url()), dir());
  EXPECT_EQ(r.exit_code, 0) << "after the rebuild: " << r.show();
}

// Moving quizzes: export, then import into an empty database (and replay --from file:) gives the
// same standings; bad files and arguments are refused with exit 2 and the line.
TEST_F(Export, ImportIntoAnEmptyDatabaseGivesTheSameStandings) {
  ScratchDatabase from(db(), dir());
  ASSERT_TRUE(from.error().empty()) << from.error();
  answered_quizzes(from);
  ASSERT_FALSE(HasFailure());
  const std::string file = dir() + "/move-" + random_hex(6) + ".jsonl";
  CommandResult r = run_command({bin(), "export", "--to", file}, isolated_env(from.url()), dir());
  ASSERT_EQ(r.exit_code, 0) << r.show();

  ScratchDatabase to(db(), dir());
  ASSERT_TRUE(to.error().empty()) << to.error();
  r = run_command({bin(), "import", file, "--dry-run"}, isolated_env(to.url()), dir());
  EXPECT_EQ(r.exit_code, 1) << "a database without the schema\n" << r.show();
  EXPECT_NE(r.err.find("quizflow migrate"), std::string::npos) << r.show();
  r = run_command({bin(), "migrate"}, isolated_env(to.url()), dir());
  ASSERT_EQ(r.exit_code, 0) << r.show();
  r = run_command({bin(), "import", file, "--dry-run"}, isolated_env(to.url()), dir());
  EXPECT_EQ(r.exit_code, 0) << r.show();
  EXPECT_NE(r.out.find("differ: 6 players in 2 quizzes"), std::string::npos) << r.show();
  r = run_command({bin(), "import", file}, isolated_env(to.url()), dir());
  ASSERT_EQ(r.exit_code, 0) << r.show();
  EXPECT_NE(r.out.find("imported: 6 events new to the log, 2 quizzes created"), std::string::npos)
      << r.show();
  const std::string standings =
      "SELECT quiz_id, user_id, score, correct, time_ms FROM standings ORDER BY 1, 2";
  const CommandResult a = psql(from.url(), standings, dir()), b = psql(to.url(), standings, dir());
  ASSERT_EQ(a.exit_code, 0) << a.show();
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(std::count(a.out.begin(), a.out.end(), '\n'), 6) << a.out;
  r = run_command({bin(), "replay", "--dry-run"}, isolated_env(to.url()), dir());
  EXPECT_EQ(r.exit_code, 0) << r.show();
  r = run_command({bin(), "replay", "--from", "file:" + file}, isolated_env(to.url()), dir());
  EXPECT_EQ(r.exit_code, 0) << "the same file again changes nothing\n" << r.show();
  EXPECT_NE(r.out.find("imported: 0 events new to the log, 0 quizzes created"), std::string::npos)
      << r.show();

  // A file that is not an export: refused at its line, exit 2.
  const std::string bad = dir() + "/bad-" + random_hex(6) + ".jsonl";
  write_file(bad, read_file(file).substr(0, read_file(file).find('\n') + 1) + "{\"event_id\":1}\n");
  r = run_command({bin(), "import", bad}, isolated_env(to.url()), dir());
  EXPECT_EQ(r.exit_code, 2) << r.show();
  EXPECT_NE(r.err.find("line 2: schema"), std::string::npos) << r.show();
  r = run_command({bin(), "import", dir() + "/absent.jsonl"}, isolated_env(to.url()), dir());
  EXPECT_EQ(r.exit_code, 2) << r.show();
  r = run_command({bin(), "replay", "--from", "kafka"}, isolated_env(to.url()), dir());
  EXPECT_EQ(r.exit_code, 2) << r.show();
  r = run_command({bin(), "import"}, isolated_env(to.url()), dir());
  EXPECT_EQ(r.exit_code, 2) << r.show();
}

// kill -9 in the middle of an import and of a replay: every quiz is left whole — all of its
// events and rebuilt standings, or none of what that run would have changed — and a second run
// finishes the work.
TEST_F(Export, ImportAndReplayKilledMidwayLeaveEveryQuizWhole) {
  ScratchDatabase sdb(db(), dir());
  ASSERT_TRUE(sdb.error().empty()) << sdb.error();
  constexpr int kQuizzes = 120, kPlayers = 2000;
  const int64_t first = next_quiz_id();
  for (int i = 1; i < kQuizzes; ++i) next_quiz_id();
  const std::string file = dir() + "/big-" + random_hex(6) + ".jsonl";
  {
    std::ofstream out(file);
    const int64_t now = wall_ms();
    for (int i = 0; i < kQuizzes; ++i) {
      const int64_t q = first + i;
      out << R"({"quiz":)" << open_quiz_json(q) << R"(,"state":"open","rewards":[]})" << '\n';
      for (int u = 1; u <= kPlayers; ++u)
        out << answer_json({"k-" + std::to_string(u), q, u, 1, u % 4, now - 1000, u % 20000})
            << '\n';
    }
  }
  const Env env = isolated_env(sdb.url());
  // Per quiz: events, standings rows and the sum of scores, as "quiz events rows sum" lines.
  auto per_quiz = [&] {
    const CommandResult r = psql(
        sdb.url(),
        "SELECT q.quiz_id, (SELECT count(*) FROM answer_events e WHERE e.quiz_id = q.quiz_id), "
        "count(s.user_id), coalesce(sum(s.score), 0) FROM quizzes q LEFT JOIN standings s "
        "USING (quiz_id) GROUP BY q.quiz_id ORDER BY 1",
        dir());
    EXPECT_EQ(r.exit_code, 0) << r.show();
    return r.out;
  };
  auto scalar = [&](const std::string& sql) {
    const CommandResult r = psql(sdb.url(), sql, dir());
    std::smatch m;
    static const std::regex number(R"(^(-?\d+)\n$)");
    return std::regex_match(r.out, m, number) ? std::stoll(m[1]) : -1;
  };
  // Runs `argv`, kills it with SIGKILL once `progress` (an SQL count) is at least 1; false when
  // it ended before (its output in `log`).
  std::string log;
  auto kill_midway = [&](const std::vector<std::string>& argv, const std::string& progress) {
    const std::string base = dir() + "/killed-" + random_hex(6);
    const pid_t pid = spawn(argv, env, base + ".out", base + ".err");
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (scalar(progress) < 1 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) {
      log = read_file(base + ".out") + read_file(base + ".err");
      return false;
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &st, 0);
    return true;
  };
  CommandResult r = run_command({bin(), "migrate"}, env, dir());
  ASSERT_EQ(r.exit_code, 0) << r.show();

  // The import, killed once the first quiz has its events.
  ASSERT_TRUE(kill_midway({bin(), "import", file}, "SELECT count(*) FROM answer_events"))
      << "the import ended before it could be killed:\n"
      << log;
  {
    std::istringstream rows(per_quiz());
    int whole = 0, empty = 0;
    for (std::string line; std::getline(rows, line);) {
      std::smatch m;
      static const std::regex row(R"(^\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*$)");
      if (!std::regex_match(line, m, row)) continue;
      const int64_t events = std::stoll(m[2]), players = std::stoll(m[3]);
      if (events == kPlayers && players == kPlayers) {
        ++whole;
      } else {
        EXPECT_EQ(events, 0) << "quiz " << m[1] << " was left half imported: " << line;
        EXPECT_EQ(players, 0) << line;
        ++empty;
      }
    }
    EXPECT_GE(whole, 1);
    EXPECT_LT(whole, kQuizzes) << "the import was not killed midway";
  }
  r = run_command({bin(), "import", file}, env, dir(), 120s);
  ASSERT_EQ(r.exit_code, 0) << r.show();
  EXPECT_EQ(scalar("SELECT count(*) FROM answer_events"), int64_t{kQuizzes} * kPlayers);
  const std::string truth = per_quiz();

  // Every standing damaged, then a replay killed once it has rebuilt a quiz.
  ASSERT_EQ(psql(sdb.url(), "UPDATE standings SET score = score + 1", dir()).exit_code, 0);
  const std::string damaged = per_quiz();
  ASSERT_NE(damaged, truth);
  const int64_t versions = scalar("SELECT sum(standings_version) FROM quizzes");
  ASSERT_GT(versions, 0);
  ASSERT_TRUE(kill_midway({bin(), "replay"}, "SELECT (sum(standings_version) > " +
                                                 std::to_string(versions) + ")::int FROM quizzes"))
      << "the replay ended before it could be killed:\n"
      << log;
  {
    std::istringstream now(per_quiz()), good(truth), bad(damaged);
    int fixed = 0, untouched = 0;
    for (std::string n, g, b;
         std::getline(now, n) && std::getline(good, g) && std::getline(bad, b);) {
      if (n == g && g != b) {
        ++fixed;
      } else if (n == b && g != b) {
        ++untouched;
      } else {
        EXPECT_EQ(n, g) << "a quiz is neither as damaged nor as rebuilt";
      }
    }
    EXPECT_GE(fixed, 1);
    EXPECT_GE(untouched, 1) << "the replay was not killed midway";
  }
  r = run_command({bin(), "replay"}, env, dir(), 120s);
  EXPECT_EQ(r.exit_code, 10) << r.show();
  EXPECT_EQ(per_quiz(), truth);
  r = run_command({bin(), "replay", "--dry-run"}, env, dir(), 120s);
  EXPECT_EQ(r.exit_code, 0) << r.show();
}

class Logs : public OpsTest {};

TEST_F(Logs, KafkaClientErrorsFollowTheLogFormat) {
  // With Kafka unreachable the Kafka client reports connection errors; they are log events too.
  for (const std::string format : {"plain", "json"}) {
    SCOPED_TRACE(format);
    const std::string kafka = "127.0.0.1:" + std::to_string(free_port());  // nothing listens
    ServerProcess s(
        bin(), dir(), "kafka-log-" + format,
        isolated_env(db(), {{"KAFKA_BROKERS", kafka}, {"QUIZFLOW_LOG_FORMAT", format}}));
    const std::string err = s.start(/*require_healthy=*/false);
    ASSERT_TRUE(err.empty()) << err << "\n" << tail(s.log());
    HttpClient c = s.client(5s);
    HttpResponse last;
    EXPECT_TRUE(poll_until(15s, [&] {
      last = c.request("GET", "/health");
      return last.status == 503;
    })) << show(last);
    std::string why;
    EXPECT_EQ(s.terminate(20s, why), std::optional<int>(0)) << why;
    int lines = 0;
    const std::string bad = log_format_problems(s.log(), format, lines);
    EXPECT_TRUE(bad.empty()) << bad;
  }
}

TEST_F(Logs, StartUpFailureIsOneLinePerEvent) {
  // The database refuses the connection: the fatal error is one log event, in either format.
  for (const std::string format : {"plain", "json"}) {
    SCOPED_TRACE(format);
    PgUrl u = PgUrl::parse(db());
    u.port = std::to_string(free_port());  // nothing listens there
    ServerProcess s(bin(), dir(), "closed-db-log-" + format,
                    isolated_env(u.str(), {{"QUIZFLOW_LOG_FORMAT", format}}));
    const auto st = s.run_until_exit(30s);
    ASSERT_TRUE(st.has_value()) << "still running after 30 s\n" << tail(s.log());
    EXPECT_NE(describe_status(st), "exit code 0");
    int lines = 0;
    const std::string bad = log_format_problems(s.log(), format, lines);
    EXPECT_TRUE(bad.empty()) << bad;
  }
}

}  // namespace
