// End-to-end tests of the status page (GET /, ingress/status_page.h): the built quizflow binary
// under a steady answer load, its page loaded in headless Chromium (headless_chromium.h), and
// what the page *shows* checked against /monitoring/stats read by the test before and after:
// the five stages drawn left to right in flow order, counts inside the bounds of the two
// readings, rates above zero and no larger than the counts allow, health, the panels; then a
// commit held by a lock (the page turns unhealthy and shows the failing check) and the engine
// killed (the page says unreachable). Screenshots are kept under the build directory
// (QF_ARTIFACT_DIR: artifacts/status-page.png, artifacts/status-page-unreachable.png).
//
// Needs QUIZFLOW_BIN, DATABASE_URL, psql and chromium (scripts/setup). Files go to a temporary
// directory, kept and named when a test fails.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "e2e/headless_chromium.h"
#include "e2e/load_helpers.h"
#include "e2e/server_fixture.h"

#ifndef QF_ARTIFACT_DIR
#error "QF_ARTIFACT_DIR (where the screenshots are kept) is set by tests/CMakeLists.txt"
#endif

namespace {

using namespace qf_e2e;
namespace lt = quizflow::loadtest;

const std::vector<std::string> kStages = {"ingest", "validate", "batch", "score", "notify"};

// What the page shows, read from its DOM: every [data-field]'s text under each stage and panel,
// the health pill, the banner, the page state and how many samples it has read.
constexpr const char* kSnapshot = R"js((() => {
  const fields = (root) => Object.fromEntries([...root.querySelectorAll('[data-field]')]
      .map((e) => [e.dataset.field, e.textContent]));
  const box = (e) => { const r = e.getBoundingClientRect();
      return {left: r.left, top: r.top, width: r.width, height: r.height}; };
  const health = document.getElementById('health');
  return JSON.stringify({
    state: document.body.dataset.state,
    samples: Number(document.body.dataset.samples),
    health: health.dataset.health,
    health_text: health.textContent,
    banner: document.getElementById('banner').textContent,
    banner_shown: document.getElementById('banner').offsetHeight > 0,
    checks: Object.fromEntries([...document.querySelectorAll('#checks [data-check]')]
        .map((e) => [e.dataset.check, e.lastChild.textContent])),
    summary: fields(document.querySelector('.summary')),
    stages: [...document.querySelectorAll('[data-stage]')].map((e) => ({
        name: e.dataset.stage, trouble: e.dataset.trouble || '', box: box(e), fields: fields(e)})),
    panels: Object.fromEntries([...document.querySelectorAll('[data-panel]')].map((e) => [
        e.dataset.panel, {trouble: e.dataset.trouble || '', fields: fields(e)}])),
  });
})())js";

// A number as the page shows it ("12,345", "1.25"); nullopt for "—" or anything else.
std::optional<double> shown_number(const rapidjson::Value& fields, const char* name) {
  if (!fields.IsObject() || !fields.HasMember(name) || !fields[name].IsString())
    return std::nullopt;
  std::string text;
  for (const char c : std::string(fields[name].GetString()))
    if (c != ',') text += c;
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

struct Prereqs : E2EPrereqs {
  std::string chromium;
};

Prereqs& page_prereqs() {
  static Prereqs p = [] {
    Prereqs r;
    std::string no_chromium;
    r.chromium = chromium_bin(no_chromium);
    find_prereqs(r, "quizflow-status-page", {"/usr/bin/psql"});
    if (r.error.empty()) r.error = no_chromium;
    return r;
  }();
  return p;
}
E2EPrereqs& prereqs() { return page_prereqs(); }
[[maybe_unused]] ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new PrereqsEnvironment(prereqs, "status page test"));

class StatusPage : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(prereqs().error.empty()) << prereqs().error; }
  void TearDown() override {
    if (HasFailure()) prereqs().failed = true;
  }
  static const Prereqs& p() { return page_prereqs(); }

  // Reads the page until `done(snapshot)` holds (every 250 ms, up to `limit`); the last snapshot
  // read is left in `snap` either way.
  template <typename Done>
  bool read_page_until(HeadlessChromium& browser, rapidjson::Document& snap, std::string& text,
                       std::chrono::milliseconds limit, Done&& done) {
    return poll_until(
        limit,
        [&] {
          std::string error;
          const auto s = browser.eval_string(kSnapshot, error);
          if (!s) {
            text = "(no snapshot: " + error + ")";
            return false;
          }
          text = *s;
          snap.Parse(text.c_str(), text.size());
          return !snap.HasParseError() && snap.IsObject() && done(snap);
        },
        std::chrono::milliseconds(250));
  }

  // A screenshot kept as a test artifact, checked to be a PNG of the page's size with content.
  static void keep_screenshot(HeadlessChromium& browser, const std::string& name) {
    const std::string path = std::string(QF_ARTIFACT_DIR) + "/" + name;
    std::filesystem::remove(path);
    ASSERT_EQ(browser.screenshot(path), "");
    const std::string png = read_file(path);
    ASSERT_GT(png.size(), 24u) << path;
    EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << path;
    const auto be32 = [&](size_t at) {
      return (static_cast<uint32_t>(static_cast<unsigned char>(png[at])) << 24) |
             (static_cast<uint32_t>(static_cast<unsigned char>(png[at + 1])) << 16) |
             (static_cast<uint32_t>(static_cast<unsigned char>(png[at + 2])) << 8) |
             static_cast<uint32_t>(static_cast<unsigned char>(png[at + 3]));
    };
    EXPECT_EQ(be32(16), 1280u) << "width in the IHDR of " << path;
    EXPECT_EQ(be32(20), 900u) << "height in the IHDR of " << path;
    // A blank 1280x900 page compresses to a few kB; the drawn page is well over 50 kB.
    EXPECT_GT(png.size(), 30'000u) << path << " looks blank";
    std::fprintf(stderr, "screenshot: %s (%zu bytes)\n", path.c_str(), png.size());
  }
};

// Answers for `quiz` in batches of 20, one after another on one connection, until `stop`.
class SteadyLoad {
 public:
  SteadyLoad(uint16_t port, int64_t quiz) : port_(port), quiz_(quiz) {
    thread_ = std::thread([this] { run(); });
  }
  ~SteadyLoad() { stop(); }
  SteadyLoad(const SteadyLoad&) = delete;
  SteadyLoad& operator=(const SteadyLoad&) = delete;

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t accepted() const { return accepted_.load(); }
  int64_t failures() const { return failures_.load(); }

 private:
  void run() {
    std::string body;
    std::vector<std::string> ids;
    const std::string prefix = "sp-" + std::to_string(quiz_) + "-";
    uint64_t seq = 0;
    while (!stop_) {
      try {
        HttpClient c("127.0.0.1", port_, std::chrono::seconds(30));
        while (!stop_) {
          lt::build_batch(body, ids, prefix, quiz_, seq, 20);
          seq += 20;
          const HttpResponse r = c.request("POST", "/v1/answers", body);
          if (r.status == 200)
            accepted_ += static_cast<int64_t>(lt::parse_verdicts(r.body, ids).accepted.size());
          else
            ++failures_;
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      } catch (const std::exception&) {
        ++failures_;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }

  uint16_t port_;
  int64_t quiz_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> accepted_{0}, failures_{0};
  std::thread thread_;
};

TEST_F(StatusPage, ShowsTheFiveStagesLiveUnderLoadConsistentWithTheStats) {
  ServerProcess s(p().bin, p().dir, "live", isolated_env(p().db));
  ASSERT_EQ(s.start(), "") << tail(s.log());
  const int64_t quiz = lt::unique_quiz_id();
  ASSERT_EQ(lt::create_quiz(s.port(), quiz, "status page"), "");
  SteadyLoad load(s.port(), quiz);

  // Every stage has seen the load before the page is opened.
  std::string error;
  rapidjson::Document before;
  ASSERT_TRUE(poll_until(std::chrono::seconds(60),
                         [&] {
                           before = lt::get_stats(s.port(), error);
                           if (!before.IsObject()) return false;
                           for (const auto& st : kStages)
                             if (int_at(before, "stages." + st + ".processed") <= 0) return false;
                           return int_at(before, "batches.committed") > 0 &&
                                  int_at(before, "outbox.relayed") > 0;
                         }))
      << "the load did not reach every stage: " << error << " accepted " << load.accepted()
      << ", failures " << load.failures() << "\n"
      << tail(s.log());

  HeadlessChromium browser(p().chromium, p().dir);
  const std::string url = "http://127.0.0.1:" + std::to_string(s.port()) + "/";
  ASSERT_EQ(browser.open(url, 1280, 900), "") << tail(browser.log());
  rapidjson::Document snap;
  std::string text;
  // Seven samples: the rates then span their full window of five intervals.
  const bool live = read_page_until(browser, snap, text, std::chrono::seconds(60), [](auto& d) {
    return d.HasMember("samples") && d["samples"].GetDouble() >= 7;
  });
  rapidjson::Document after = lt::get_stats(s.port(), error);
  ASSERT_TRUE(after.IsObject()) << error;
  ASSERT_TRUE(live) << "the page did not read 7 samples in 60 s: " << text << "\n"
                    << tail(browser.log(), 4096);
  SCOPED_TRACE("page: " + text);

  EXPECT_EQ(str_at(snap, "state"), "live");
  EXPECT_EQ(str_at(snap, "health"), "healthy");
  EXPECT_EQ(str_at(snap, "health_text"), "healthy");
  EXPECT_FALSE(snap["banner_shown"].GetBool()) << "banner: " << str_at(snap, "banner");
  ASSERT_TRUE(snap["checks"].IsObject());
  for (const char* check : {"engine", "database", "kafka", "commits"})
    EXPECT_EQ(str_at(snap["checks"], check), "ok") << check;

  // The five stages, drawn left to right in flow order, each visible.
  const auto& stages = snap["stages"];
  ASSERT_TRUE(stages.IsArray());
  ASSERT_EQ(stages.Size(), kStages.size());
  double right_of_previous = -1;
  for (rapidjson::SizeType i = 0; i < stages.Size(); ++i) {
    const auto& st = stages[i];
    const std::string name = st["name"].GetString();
    SCOPED_TRACE("stage " + name);
    EXPECT_EQ(name, kStages[i]);
    const double left = st["box"]["left"].GetDouble(), width = st["box"]["width"].GetDouble();
    EXPECT_GT(width, 100) << "drawn too narrow";
    EXPECT_GT(st["box"]["height"].GetDouble(), 100);
    EXPECT_GE(left, right_of_previous) << "not right of the stage before it";
    EXPECT_LE(left + width, 1280) << "beyond the right edge at 1280 px";
    right_of_previous = left + width;

    const auto& f = st["fields"];
    const std::string path = "stages." + name + ".";
    const auto processed = shown_number(f, "processed");
    ASSERT_TRUE(processed.has_value());
    EXPECT_GT(*processed, 0);
    EXPECT_GE(*processed, int_at(before, path + "processed")) << "below an earlier reading";
    EXPECT_LE(*processed, int_at(after, path + "processed")) << "above a later reading";
    // Over the page's window (five one-second intervals or longer, inside before…after), the
    // stage processed rate × window ≤ what the two readings saw.
    const auto rate = shown_number(f, "rate");
    ASSERT_TRUE(rate.has_value()) << "no rate shown";
    EXPECT_GT(*rate, 0);
    EXPECT_LE(*rate * 5, 1.02 * static_cast<double>(int_at(after, path + "processed") -
                                                    int_at(before, path + "processed")) +
                             1);
    for (const char* field : {"backlog", "in_flight", "oldest_wait_ms", "rejected", "failed",
                              "latency_p50", "latency_p99"}) {
      const auto v = shown_number(f, field);
      EXPECT_TRUE(v.has_value() && *v >= 0) << field << " not shown as a number";
    }
    EXPECT_EQ(shown_number(f, "failed"), 0.0);
    EXPECT_LE(shown_number(f, "latency_p50").value_or(1e18),
              shown_number(f, "latency_p99").value_or(-1));
  }

  // Counters inside the bounds of the two readings; settings equal to the stats'.
  const auto& panels = snap["panels"];
  const auto within = [&](const char* panel, const char* field, const std::string& path) {
    SCOPED_TRACE(std::string(panel) + "." + field);
    ASSERT_TRUE(panels.HasMember(panel));
    const auto v = shown_number(panels[panel]["fields"], field);
    ASSERT_TRUE(v.has_value()) << "not shown";
    EXPECT_GE(*v, static_cast<double>(int_at(before, path)));
    EXPECT_LE(*v, static_cast<double>(int_at(after, path)));
  };
  const auto equal = [&](const char* panel, const char* field, const std::string& path) {
    SCOPED_TRACE(std::string(panel) + "." + field);
    ASSERT_TRUE(panels.HasMember(panel));
    EXPECT_EQ(shown_number(panels[panel]["fields"], field),
              std::optional<double>(static_cast<double>(int_at(after, path))));
  };
  within("batches", "committed", "batches.committed");
  within("batches", "rows", "batches.rows");
  EXPECT_GT(shown_number(panels["batches"]["fields"], "committed").value_or(0), 0);
  EXPECT_GT(shown_number(panels["batches"]["fields"], "rows_rate").value_or(0), 0);
  EXPECT_GT(shown_number(snap["summary"], "answers_rate").value_or(0), 0);
  EXPECT_GT(shown_number(snap["summary"], "rows_rate").value_or(0), 0);
  for (const char* f : {"commit_p50", "commit_p99", "last_commit_ms"})
    EXPECT_TRUE(shown_number(panels["batches"]["fields"], f).has_value()) << f;
  equal("database_pool", "pool_size", "database_pool.pool_size");
  equal("database_pool", "max_overflow", "database_pool.max_overflow");
  {
    const auto& pool = panels["database_pool"]["fields"];
    const auto out = shown_number(pool, "checked_out_connections");
    const auto open = shown_number(pool, "total_connections");
    ASSERT_TRUE(out && open);
    EXPECT_LE(*out, *open);
    EXPECT_GE(*open, 1);
    EXPECT_LE(*open, int_at(after, "database_pool.pool_size") +
                         int_at(after, "database_pool.max_overflow"));
    EXPECT_TRUE(shown_number(pool, "wait_count").has_value());
    EXPECT_TRUE(shown_number(pool, "wait_ms_p99").has_value());
  }
  within("outbox", "relayed", "outbox.relayed");
  EXPECT_TRUE(shown_number(panels["outbox"]["fields"], "unsent").has_value());
  EXPECT_TRUE(shown_number(panels["outbox"]["fields"], "oldest_unsent_ms").has_value());
  within("message_queue", "total_processed", "message_queue.total_processed");
  EXPECT_TRUE(shown_number(panels["message_queue"]["fields"], "queue_size").has_value());
  EXPECT_GE(shown_number(panels["quizzes"]["fields"], "open").value_or(0), 1);
  equal("http", "max_in_flight", "http.max_in_flight");
  within("http", "overloaded", "http.overloaded");

  keep_screenshot(browser, "status-page.png");
  load.stop();
  EXPECT_GT(load.accepted(), 0);
  if (HasFailure()) print_log(s);
}

TEST_F(StatusPage, ShowsUnhealthyWhileCommitsStallThenUnreachableWhenTheEngineIsGone) {
  // A database of its own: the lock below must stall no other test's commits.
  ScratchDatabase scratch(p().db, p().dir);
  ASSERT_EQ(scratch.error(), "");
  ServerProcess s(p().bin, p().dir, "stall",
                  isolated_env(scratch.url(), {{"QUIZFLOW_HEALTH_MAX_COMMIT_STALL_MS", "1500"},
                                               {"QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS", "2000"}}));
  ASSERT_EQ(s.start(), "") << tail(s.log());
  const int64_t quiz = lt::unique_quiz_id();
  ASSERT_EQ(lt::create_quiz(s.port(), quiz, "status page stall"), "");

  HeadlessChromium browser(p().chromium, p().dir);
  ASSERT_EQ(browser.open("http://127.0.0.1:" + std::to_string(s.port()) + "/", 1280, 900), "")
      << tail(browser.log());
  rapidjson::Document snap;
  std::string text;
  ASSERT_TRUE(read_page_until(browser, snap, text, std::chrono::seconds(60), [](auto& d) {
    return d["health"] == "healthy" && d["state"] == "live";
  })) << text;

  // Another session holds the event log's lock: the next batch cannot commit.
  std::thread holder([&] {
    psql(scratch.url(),
         "BEGIN; LOCK TABLE answer_events IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120); COMMIT;",
         p().dir);
  });
  struct Release {  // ends the holding session however the test leaves
    const ScratchDatabase& db;
    std::thread& t;
    ~Release() {
      db.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" +
               db.name() + "' AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()");
      t.join();
    }
  } release{scratch, holder};
  ASSERT_TRUE(poll_until(std::chrono::seconds(30), [&] {
    return psql(scratch.url(),
                "SELECT count(*) FROM pg_locks WHERE relation = 'answer_events'::regclass AND "
                "mode = 'AccessExclusiveLock' AND granted",
                p().dir)
               .out.find('1') == 0;
  }));
  // Waits for its commit: answered 503 at the request deadline, the batch still waiting.
  HttpClient c = s.client(std::chrono::seconds(30));
  const HttpResponse r = c.request("POST", "/v1/answers",
                                   answer_json({"stalled", quiz, 1, 1, 2, wall_ms() - 1000, 5}));
  EXPECT_EQ(r.status, 503) << show(r);

  ASSERT_TRUE(read_page_until(browser, snap, text, std::chrono::seconds(30),
                              [](auto& d) { return d["health"] == "unhealthy"; }))
      << "the page never showed unhealthy: " << text;
  {
    SCOPED_TRACE("page: " + text);
    EXPECT_EQ(str_at(snap, "state"), "live");
    EXPECT_EQ(str_at(snap, "health_text"), "unhealthy");
    EXPECT_NE(str_at(snap["checks"], "commits").find("no transaction committed"),
              std::string::npos);
    EXPECT_EQ(str_at(snap["checks"], "database"), "ok");
    EXPECT_TRUE(snap["banner_shown"].GetBool());
    EXPECT_NE(str_at(snap, "banner").find("commits:"), std::string::npos);
    EXPECT_EQ(str_at(snap["panels"]["health"], "trouble"), "bad");
  }

  // The engine gone: the page says so, keeps the last figures, and names the time.
  s.kill_now();
  ASSERT_TRUE(read_page_until(browser, snap, text, std::chrono::seconds(30),
                              [](auto& d) { return d["state"] == "unreachable"; }))
      << "the page never showed unreachable: " << text;
  SCOPED_TRACE("page: " + text);
  EXPECT_EQ(str_at(snap, "health"), "unreachable");
  EXPECT_EQ(str_at(snap, "health_text"), "unreachable");
  EXPECT_TRUE(snap["banner_shown"].GetBool());
  EXPECT_NE(str_at(snap, "banner").find("Engine unreachable since"), std::string::npos);
  EXPECT_TRUE(shown_number(snap["panels"]["batches"]["fields"], "committed").has_value())
      << "the last figures are kept";
  keep_screenshot(browser, "status-page-unreachable.png");
}

// The page as served: HTML with the documented headers, nothing that reaches beyond the engine,
// and GET only.
TEST_F(StatusPage, IsServedAsOneSelfContainedDocument) {
  ServerProcess s(p().bin, p().dir, "served", isolated_env(p().db));
  ASSERT_EQ(s.start(), "") << tail(s.log());
  HttpClient c = s.client(std::chrono::seconds(10));
  for (const char* path : {"/", "/status"}) {
    SCOPED_TRACE(path);
    const HttpResponse r = c.request("GET", path);
    ASSERT_EQ(r.status, 200) << show(r);
    ASSERT_NE(r.header("content-type"), nullptr);
    EXPECT_EQ(*r.header("content-type"), "text/html; charset=utf-8");
    ASSERT_NE(r.header("cache-control"), nullptr);
    EXPECT_EQ(*r.header("cache-control"), "no-cache");
    ASSERT_NE(r.header("content-security-policy"), nullptr);
    EXPECT_NE(r.header("content-security-policy")->find("default-src 'none'"), std::string::npos);
    EXPECT_NE(r.header("content-security-policy")->find("connect-src 'self'"), std::string::npos);
    EXPECT_EQ(r.body.rfind("<!doctype html>", 0), 0u);
    for (const char* stage : {"ingest", "validate", "batch", "score", "notify"})
      EXPECT_NE(r.body.find(std::string("\"") + stage + "\""), std::string::npos) << stage;
    EXPECT_NE(r.body.find("/monitoring/stats"), std::string::npos);
    EXPECT_NE(r.body.find("\"/health\""), std::string::npos);
  }
  for (const char* method : {"POST", "PUT", "DELETE"}) {
    const HttpResponse r = c.request(method, "/", "{}");
    EXPECT_EQ(r.status, 405) << method << " " << show(r);
    EXPECT_EQ(str_at(parse(r), "error.code"), "method_not_allowed") << show(r);
  }
}

}  // namespace
