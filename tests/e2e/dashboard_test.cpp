// The Grafana dashboard of the compose stack (docker/grafana/dashboards/quizflow.json, issue 14)
// against the engine it shows: the built quizflow binary (QUIZFLOW_BIN) configured as
// docker/compose.yml runs it (consuming quiz.answers, here on a mock Kafka in a child process),
// with a little traffic of every kind (answers over HTTP and Kafka, a rejected one, a dead
// letter, a quiz closed and finalized), scraped by Debian's real prometheus.
//
//   - every quizflow_* name any panel or variable queries is a series of the engine's /metrics;
//   - every panel query, with Grafana's variables replaced as Grafana would (all replicas, then
//     the one replica), is valid PromQL that returns series from that Prometheus;
//   - the replica variable lists the scraped engine;
//   - docker/prometheus.yml passes `promtool check config`.
//
// The static checks of the files (datasource uid, ports, the replica filter on every selector)
// are in tests/unit/deploy_files_test.cpp. Needs /usr/bin/prometheus and /usr/bin/promtool.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "e2e/prometheus.h"
#include "e2e/server_fixture.h"
#include "support/kafka_reader.h"
#include "support/mock_kafka_process.h"

namespace qf_e2e {
namespace {

using quizflow::testing::MockKafkaProcess;
using quizflow::testing::produce_all;

constexpr const char* kDashboard = "docker/grafana/dashboards/quizflow.json";
// Grafana's $__rate_interval is max(4 × scrape interval, step + scrape interval); the scrapes
// here are 1 s apart, and a wider window keeps two samples in it on a loaded machine.
constexpr const char* kRateInterval = "15s";

std::string source_path(const std::string& relative) {
  return std::string(QF_SOURCE_DIR) + "/" + relative;
}

struct PanelQuery {
  std::string where;  // "panel 'Backlog by stage' target A", for messages
  std::string expr;
};

struct DashboardQueries {
  std::vector<PanelQuery> targets;
  std::vector<std::string> variable_queries;  // e.g. label_values(quizflow_up, instance)
  std::string error;
};

// The targets of `panels` and of the panels nested in (collapsed) rows.
void collect_targets(const rapidjson::Value& panels, std::vector<PanelQuery>& out,
                     std::string& error) {
  if (!panels.IsArray()) {
    error = "\"panels\" is not an array";
    return;
  }
  for (const auto& p : panels.GetArray()) {
    const std::string title = str_at(p, "title");
    if (const rapidjson::Value* nested = at_path(p, "panels"); nested != nullptr)
      collect_targets(*nested, out, error);
    const rapidjson::Value* targets = at_path(p, "targets");
    if (targets == nullptr) continue;
    if (!targets->IsArray()) {
      error = "panel '" + title + "': \"targets\" is not an array";
      return;
    }
    for (const auto& t : targets->GetArray()) {
      const std::string where = "panel '" + title + "' target " + str_at(t, "refId");
      const rapidjson::Value* e = at_path(t, "expr");
      if (e == nullptr || !e->IsString() || e->GetStringLength() == 0) {
        error = where + " has no expr";
        return;
      }
      out.push_back({where, e->GetString()});
    }
  }
}

DashboardQueries dashboard_queries() {
  DashboardQueries q;
  const std::string text = read_file(source_path(kDashboard));
  if (text.empty()) {
    q.error = std::string(kDashboard) + " not found";
    return q;
  }
  const rapidjson::Document d = parse_json(text);
  if (d.HasParseError() || !d.IsObject()) {
    q.error = std::string(kDashboard) + " is not a JSON object";
    return q;
  }
  if (const rapidjson::Value* panels = at_path(d, "panels"))
    collect_targets(*panels, q.targets, q.error);
  if (const rapidjson::Value* vars = at_path(d, "templating.list"); vars && vars->IsArray()) {
    for (const auto& v : vars->GetArray()) {
      if (str_at(v, "type") != "query") continue;
      const rapidjson::Value* query = at_path(v, "query");
      if (query != nullptr && query->IsObject()) query = at_path(*query, "query");
      if (query == nullptr || !query->IsString()) {
        q.error = "variable " + str_at(v, "name") + " has no query";
        return q;
      }
      q.variable_queries.push_back(query->GetString());
    }
  }
  return q;
}

std::set<std::string> quizflow_names(const std::string& text) {
  static const std::regex name_re("quizflow_[a-z0-9_]+");
  std::set<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name_re);
       it != std::sregex_iterator(); ++it)
    out.insert(it->str());
  return out;
}

// `expr` with Grafana's variables replaced: `$__rate_interval`, `$__interval` (both by the
// window above) and the replica variable
// (`instance_regex`, as Grafana writes a multi-value variable into a regex matcher: ".*" for
// All, a single value with its regex metacharacters escaped). Returns "" when a variable the
// test does not know is left (a `$`).
std::string substitute(std::string expr, const std::string& instance_regex) {
  const std::vector<std::pair<std::string, std::string>> vars = {
      {"${__rate_interval}", kRateInterval}, {"$__rate_interval", kRateInterval},
      {"${__interval}", kRateInterval},      {"$__interval", kRateInterval},
      {"${instance}", instance_regex},       {"$instance", instance_regex},
  };
  for (const auto& [from, to] : vars)
    for (size_t at = expr.find(from); at != std::string::npos; at = expr.find(from, at + to.size()))
      expr.replace(at, from.size(), to);
  return expr.find('$') == std::string::npos ? expr : std::string();
}

// A replica's address as a Grafana regex value inside a PromQL string: "127\\.0\\.0\\.1:5000".
std::string escaped_instance(const std::string& instance) {
  std::string out;
  for (const char ch : instance) {
    if (ch == '.') out += "\\\\";
    out += ch;
  }
  return out;
}

// The names of the samples of `text` (a /metrics body), e.g. quizflow_batch_commit_seconds_sum.
std::set<std::string> sample_names(const Exposition& e) {
  std::set<std::string> out;
  for (const auto& [key, value] : e.series) out.insert(key.substr(0, key.find('{')));
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "\n  " + x;
  return s;
}

// ---------------------------------------------------------------------------------------------
// One engine as the compose stack runs it, a mock Kafka, traffic, and a Prometheus scraping it
// ---------------------------------------------------------------------------------------------

constexpr int kHttpAnswers = 30;   // over HTTP to the quiz that is then closed
constexpr int kKafkaAnswers = 20;  // on quiz.answers, to a second quiz

class Dashboard : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setup_error_ = start();
    if (!setup_error_.empty() && server_)
      setup_error_ += "\nserver output:\n" + tail(server_->log());
  }

  static void TearDownTestSuite() {
    prometheus_.reset();
    if (server_) {
      std::string why;
      if (server_->terminate(20s, why) != std::optional<int>(0))
        std::fprintf(stderr, "the server did not stop cleanly: %s\n%s\n", why.c_str(),
                     tail(server_->log()).c_str());
    }
    server_.reset();
    kafka_.reset();
    db_.reset();
    if (dir_.empty()) return;
    if (failed_ || !setup_error_.empty())
      std::fprintf(stderr, "dashboard test files kept in %s\n", dir_.c_str());
    else
      std::filesystem::remove_all(dir_);
  }

  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  void TearDown() override {
    if (!HasFailure()) return;
    failed_ = true;
    if (server_) print_log(*server_);
    if (prometheus_) std::fprintf(stderr, "prometheus log:\n%s\n", prometheus_->log().c_str());
  }

  // Returns "" or what went wrong.
  static std::string start() {
    std::string error;
    const std::string bin = quizflow_bin(error);
    if (!error.empty()) return error;
    const std::string admin_url = database_url(error);
    if (!error.empty()) return error;
    for (const char* tool : {"/usr/bin/prometheus", "/usr/bin/promtool"})
      if (::access(tool, X_OK) != 0) return std::string(tool) + " is missing: this test needs it";
    dir_ = make_temp_dir("quizflow-dashboard");
    db_ = std::make_unique<ScratchDatabase>(admin_url, dir_);
    if (!db_->error().empty()) return db_->error();
    try {
      kafka_ = std::make_unique<MockKafkaProcess>(/*brokers=*/1, /*partitions=*/3);
    } catch (const std::exception& e) {
      return std::string("mock Kafka: ") + e.what();
    }
    // docker/compose.yml's quizflow: consuming quiz.answers in a group.
    server_ = std::make_unique<ServerProcess>(
        bin, dir_, "dashboard",
        isolated_env(db_->url(), {{"KAFKA_BROKERS", kafka_->bootstrap()},
                                  {"KAFKA_GROUP_ID", "dashboard-" + random_hex(8)},
                                  {"QUIZFLOW_CONSUME_ANSWERS", "true"},
                                  {"KAFKA_SESSION_TIMEOUT_MS", "6000"}}));
    if (std::string err = server_->start(); !err.empty()) return "starting the server: " + err;
    prometheus_ = std::make_unique<PrometheusProcess>(dir_, server_->port());
    instance_ = "127.0.0.1:" + std::to_string(server_->port());
    return drive_traffic();
  }

  // Answers over HTTP (one rejected) to a quiz then closed until it is finalized, answers and a
  // malformed message on quiz.answers for a second quiz; waits until the engine counted them.
  static std::string drive_traffic() {
    HttpClient c = server_->client();
    const int64_t closed = next_quiz_id(), open = next_quiz_id();
    for (const int64_t quiz : {closed, open}) {
      const HttpResponse r = c.request("POST", "/v1/quizzes", open_quiz_json(quiz));
      if (r.status != 201) return "creating quiz " + std::to_string(quiz) + ": " + show(r);
    }
    const int64_t now = wall_ms() - 1000;
    std::vector<std::string> items;
    for (int u = 1; u <= kHttpAnswers; ++u)
      items.push_back(answer_json({"dash-" + std::to_string(closed) + "-" + std::to_string(u),
                                   closed, u, 1, u % 4, now, 100 + u}));
    items.push_back(R"({"event_id":"dash-bad","quiz_id":"x"})");
    HttpResponse r = c.request("POST", "/v1/answers", batch_json(items));
    if (r.status != 200 || int_at(parse(r), "accepted") != kHttpAnswers)
      return "posting answers: " + show(r);
    r = c.request("POST", "/v1/quizzes/" + std::to_string(closed) + "/close", "");
    if (r.status != 202) return "closing quiz " + std::to_string(closed) + ": " + show(r);

    std::vector<std::pair<std::string, std::string>> messages;
    for (int u = 1; u <= kKafkaAnswers; ++u)
      messages.emplace_back(std::to_string(open),
                            answer_json({"dash-k-" + std::to_string(open) + "-" + std::to_string(u),
                                         open, u, 2, u % 3, now, 50 + u}));
    messages.emplace_back(std::to_string(open), "{not json");  // a dead letter
    try {
      produce_all(kafka_->bootstrap(), "quiz.answers", messages, 30000);
    } catch (const std::exception& e) {
      return std::string("producing to quiz.answers: ") + e.what();
    }

    std::string last;
    const bool settled = poll_until(60s, [&] {
      const HttpResponse q = c.request("GET", "/v1/quizzes/" + std::to_string(closed));
      const HttpResponse s = c.request("GET", "/monitoring/stats");
      const auto st = parse(s);
      last = "quiz " + show(q) + "\nstats " + show(s);
      return str_at(parse(q), "state") == "finalized" &&
             int_at(st, "consumer.consumed") >= kKafkaAnswers + 1 &&
             int_at(st, "consumer.dead_letters") >= 1 && int_at(st, "consumer.in_engine") == 0 &&
             int_at(st, "batches.rows") >= kHttpAnswers + kKafkaAnswers &&
             int_at(st, "outbox.relayed") > 0;
    });
    if (!settled)
      return "within 60 s the closed quiz was not finalized, or the Kafka messages were not all "
             "settled; last:\n" +
             last;
    return {};
  }

  static Exposition metrics(std::string* body = nullptr) {
    HttpClient c = server_->client();
    const HttpResponse r = c.request("GET", "/metrics");
    if (body) *body = r.body;
    return parse_exposition(r.status == 200 ? r.body : std::string());
  }

  static inline std::string dir_, instance_, setup_error_;
  static inline bool failed_ = false;
  static inline std::unique_ptr<ScratchDatabase> db_;
  static inline std::unique_ptr<MockKafkaProcess> kafka_;
  static inline std::unique_ptr<ServerProcess> server_;
  static inline std::unique_ptr<PrometheusProcess> prometheus_;
};

TEST_F(Dashboard, EveryMetricItQueriesIsASeriesOfTheEngine) {
  const DashboardQueries q = dashboard_queries();
  ASSERT_TRUE(q.error.empty()) << q.error;
  std::set<std::string> wanted;
  for (const auto& t : q.targets)
    for (const auto& n : quizflow_names(t.expr)) wanted.insert(n);
  for (const auto& v : q.variable_queries)
    for (const auto& n : quizflow_names(v)) wanted.insert(n);
  ASSERT_GE(q.targets.size(), 30u) << "the dashboard lost its panels";
  ASSERT_GE(wanted.size(), 40u) << "the dashboard queries few metrics";

  // The consumer's lag appears once the group assigned partitions: poll.
  std::vector<std::string> missing;
  std::string body;
  const bool all = poll_until(30s, [&] {
    missing.clear();
    const std::set<std::string> have = sample_names(metrics(&body));
    for (const auto& n : wanted)
      if (!have.count(n)) missing.push_back(n);
    return missing.empty();
  });
  EXPECT_TRUE(all) << "queried by " << kDashboard << " but not in /metrics:" << join(missing)
                   << "\n/metrics:\n"
                   << body;
}

// The alerts of docs/operations.md ("What to watch"): the first `…` of each row's last cell.
std::vector<std::string> runbook_alerts() {
  std::istringstream in(read_file(source_path("docs/operations.md")));
  std::vector<std::string> out;
  bool in_section = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("## ", 0) == 0) in_section = line == "## What to watch";
    if (!in_section || line.rfind("| ", 0) != 0) continue;
    const auto last = line.rfind(" | ");
    const auto open = line.find('`', last);
    const auto close = open == std::string::npos ? open : line.find('`', open + 1);
    if (close != std::string::npos && line.find("quizflow_", open) < close)
      out.push_back(line.substr(open + 1, close - open - 1));
  }
  return out;
}

// Each alert of the runbook is PromQL that a real Prometheus accepts against the engine's
// series, and every metric it names is exposed.
TEST_F(Dashboard, TheRunbooksAlertsAreValidQueriesOfExposedMetrics) {
  const auto alerts = runbook_alerts();
  ASSERT_GE(alerts.size(), 10u) << "docs/operations.md \"What to watch\" lost its alerts";
  std::set<std::string> wanted;
  for (const auto& a : alerts)
    for (const auto& n : quizflow_names(a)) wanted.insert(n);
  std::vector<std::string> missing;
  poll_until(30s, [&] {
    missing.clear();
    const std::set<std::string> have = sample_names(metrics());
    for (const auto& n : wanted)
      if (!have.count(n)) missing.push_back(n);
    return missing.empty();
  });
  EXPECT_TRUE(missing.empty()) << "named by an alert of docs/operations.md but not in /metrics:"
                               << join(missing);
  for (const auto& a : alerts) {
    std::string raw;
    const rapidjson::Document d = prometheus_->query(a, raw);
    EXPECT_EQ(str_at(d, "status"), "success") << a << " -> " << raw;
  }
}

TEST_F(Dashboard, TheTrafficMovedTheCountersItShows) {
  const Exposition m = metrics();
  EXPECT_TRUE(m.problems.empty()) << join(m.problems);
  for (const char* stage : {"ingest", "validate", "batch", "score", "notify"})
    EXPECT_GE(
        m.get("quizflow_stage_processed_total{stage=\"" + std::string(stage) + "\"}").value_or(0),
        kHttpAnswers + kKafkaAnswers)
        << stage;
  EXPECT_GE(m.get("quizflow_stage_rejected_total{stage=\"ingest\"}").value_or(0), 1);
  EXPECT_GE(m.get("quizflow_batch_rows_total").value_or(0), kHttpAnswers + kKafkaAnswers);
  EXPECT_GE(m.get("quizflow_batch_commit_seconds_count").value_or(0), 1);
  EXPECT_GE(m.get("quizflow_finalizations_total").value_or(0), 1);
  EXPECT_GE(m.get("quizflow_rewards_granted_total").value_or(0), 1);
  EXPECT_GE(m.get("quizflow_quizzes{state=\"finalized\"}").value_or(0), 1);
  EXPECT_GE(m.get("quizflow_outbox_relayed_total").value_or(0), 1);
  EXPECT_GE(m.get("quizflow_producer_delivered_total").value_or(0), 1);
  EXPECT_GE(m.get("quizflow_consumer_messages_total").value_or(0), kKafkaAnswers + 1);
  EXPECT_GE(m.get("quizflow_consumer_dead_letters_total").value_or(0), 1);
}

TEST_F(Dashboard, EveryQueryReturnsSeriesFromARealPrometheus) {
  const DashboardQueries q = dashboard_queries();
  ASSERT_TRUE(q.error.empty()) << q.error;
  ASSERT_FALSE(q.targets.empty());
  // Grafana's "All" (the variable's allValue) and the one replica.
  for (const std::string& instance : {std::string(".*"), escaped_instance(instance_)}) {
    SCOPED_TRACE("instance=~\"" + instance + "\"");
    // Errors (a parse error, an unknown variable) are final; an empty answer may only mean that
    // Prometheus has not scraped twice yet: those are asked again until the deadline.
    std::vector<std::string> errors, empty;
    poll_until(
        60s,
        [&] {
          errors.clear();
          empty.clear();
          for (const auto& t : q.targets) {
            const std::string expr = substitute(t.expr, instance);
            if (expr.empty()) {
              errors.push_back(t.where + ": a Grafana variable the test does not know: " + t.expr);
              continue;
            }
            std::string raw;
            const rapidjson::Document d = prometheus_->query(expr, raw);
            const rapidjson::Value* res = at_path(d, "data.result");
            if (str_at(d, "status") != "success" || res == nullptr || !res->IsArray())
              errors.push_back(t.where + ": " + expr + " -> " + raw);
            else if (res->Empty())
              empty.push_back(t.where + ": " + expr);
          }
          return !errors.empty() || empty.empty() || prometheus_->exited();
        },
        500ms);
    ASSERT_FALSE(prometheus_->exited()) << "prometheus exited:\n" << prometheus_->log();
    EXPECT_TRUE(errors.empty()) << errors.size() << " of " << q.targets.size()
                                << " dashboard queries are not valid:" << join(errors);
    EXPECT_TRUE(empty.empty() || !errors.empty())
        << empty.size() << " of " << q.targets.size()
        << " dashboard queries returned no series within 60 s:" << join(empty);
  }
}

TEST_F(Dashboard, TheReplicaVariableListsTheScrapedEngine) {
  const DashboardQueries q = dashboard_queries();
  ASSERT_TRUE(q.error.empty()) << q.error;
  ASSERT_FALSE(q.variable_queries.empty()) << "no query variable (the replica selector)";
  static const std::regex label_values_re(
      R"(^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$)");
  for (const auto& v : q.variable_queries) {
    SCOPED_TRACE(v);
    std::smatch m;
    ASSERT_TRUE(std::regex_match(v, m, label_values_re))
        << "only label_values(metric, label) variables are checked";
    // What Grafana asks Prometheus for such a variable.
    const std::string target =
        "/api/v1/label/" + m[2].str() + "/values?match[]=" + url_encode(m[1].str());
    std::string raw;
    std::set<std::string> values;
    poll_until(30s, [&] {
      values.clear();
      const rapidjson::Document d = prometheus_->get(target, raw);
      if (const rapidjson::Value* data = at_path(d, "data"); data && data->IsArray())
        for (const auto& x : data->GetArray())
          if (x.IsString()) values.insert(x.GetString());
      return values.count(instance_) > 0;
    });
    if (m[2] == "instance")
      EXPECT_EQ(values, std::set<std::string>{instance_}) << raw;
    else
      EXPECT_FALSE(values.empty()) << raw;
  }
}

TEST_F(Dashboard, ThePrometheusConfigOfTheComposeStackPassesPromtool) {
  const CommandResult r =
      run_command({"/usr/bin/promtool", "check", "config", source_path("docker/prometheus.yml")},
                  {}, dir_, 30s);
  EXPECT_EQ(r.exit_code, 0) << r.show();
}

}  // namespace
}  // namespace qf_e2e
