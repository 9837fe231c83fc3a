// The deployment files against the code they configure (issue 14; no Docker engine runs here):
// every quizflow key docker/compose.yml sets is a key of the Config, and docker/Dockerfile
// installs packages only through scripts/setup (the one list), runs as a non-root user and
// checks /health. The monitoring files: Prometheus scrapes every replica on the engine's port,
// Grafana's provisioning and dashboard agree with each other (tests/e2e/dashboard_test.cpp runs
// the dashboard's queries against a real Prometheus).
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "core/config.h"

namespace quizflow {
namespace {

std::string read(const std::string& relative) {
  std::ifstream in(std::string(QF_SOURCE_DIR) + "/" + relative);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::set<std::string> config_keys() {
  rapidjson::Document d;
  const std::string json = describe_config(Config{});
  d.Parse(json.c_str());
  std::set<std::string> keys;
  for (auto m = d.MemberBegin(); m != d.MemberEnd(); ++m) keys.insert(m->name.GetString());
  return keys;
}

// The lines of one service of a compose file (under `services:`, indented by two spaces), its
// own line excluded; "" when there is no such service.
std::string service_block(const std::string& compose, const std::string& service) {
  std::istringstream in(compose);
  std::string line, out;
  bool in_service = false;
  while (std::getline(in, line)) {
    if (line.rfind("  ", 0) == 0 && line.size() > 2 && line[2] != ' ' && line[2] != '#') {
      in_service = line == "  " + service + ":";
      continue;
    }
    if (!line.empty() && line[0] != ' ' && line[0] != '#') in_service = false;  // `volumes:`
    if (in_service) out += line + "\n";
  }
  return out;
}

// The environment keys of one service of a compose file (its `environment:` mapping).
std::set<std::string> service_env(const std::string& compose, const std::string& service) {
  std::set<std::string> keys;
  std::istringstream in(service_block(compose, service));
  std::string line;
  bool in_env = false;
  const std::regex key(R"(^      ([A-Z][A-Z0-9_]*):)");
  while (std::getline(in, line)) {
    if (line.rfind("    ", 0) == 0 && line.size() > 4 && line[4] != ' ') {
      in_env = line == "    environment:";
      continue;
    }
    std::smatch m;
    if (in_env && std::regex_search(line, m, key)) keys.insert(m[1]);
  }
  return keys;
}

// The first capture of `re` in `text`, or "".
std::string capture(const std::string& text, const std::string& re) {
  std::smatch m;
  return std::regex_search(text, m, std::regex(re)) ? m[1].str() : std::string();
}

TEST(DeployFiles, EveryQuizflowKeyOfTheComposeFileIsAConfigKey) {
  const std::string compose = read("docker/compose.yml");
  ASSERT_FALSE(compose.empty()) << "docker/compose.yml not found";
  const auto keys = service_env(compose, "quizflow");
  ASSERT_TRUE(keys.count("DATABASE_URL") && keys.count("KAFKA_BROKERS"))
      << "the quizflow service sets neither DATABASE_URL nor KAFKA_BROKERS";
  const auto known = config_keys();
  ASSERT_GT(known.size(), 30u);
  for (const std::string& k : keys) EXPECT_TRUE(known.count(k)) << k << " is not a Config key";
  // The other services' settings are not the engine's (KAFKA_NODE_ID is the broker's).
  EXPECT_FALSE(service_env(compose, "kafka").empty());
}

TEST(DeployFiles, TheDockerfileInstallsOnlyThroughScriptsSetupAndRunsUnprivileged) {
  const std::string df = read("docker/Dockerfile");
  ASSERT_FALSE(df.empty()) << "docker/Dockerfile not found";
  for (const char* own : {"apt-get", "apt install", "dpkg -i", "pip install", "npm install"})
    EXPECT_EQ(df.find(own), std::string::npos) << "the Dockerfile installs by itself: " << own;
  EXPECT_NE(df.find("RUN bash scripts/setup --build &&"), std::string::npos) << "build stage";
  EXPECT_NE(df.find("setup --runtime"), std::string::npos) << "runtime stage";
  EXPECT_NE(df.find("setup --nginx"), std::string::npos) << "front stage";
  const std::string setup = read("scripts/setup");
  for (const char* mode : {"--build)", "--runtime)", "--nginx)"})
    EXPECT_NE(setup.find(mode), std::string::npos) << "scripts/setup has no " << mode;
  EXPECT_TRUE(std::regex_search(df, std::regex(R"(\nUSER quizflow\n)")));
  EXPECT_TRUE(std::regex_search(df, std::regex(R"(HEALTHCHECK[^\n]*\n[^\n]*/health)")));
  EXPECT_NE(df.find("FROM debian:12 AS build"), std::string::npos);
}

// The compose stack's Prometheus scrapes /metrics of every quizflow replica on the port the
// engine listens on (docker/prometheus.yml, found through Docker's DNS), from the file the
// prometheus service mounts; the dashboard reads its job.
TEST(DeployFiles, PrometheusScrapesEveryReplicaOnTheEnginesPort) {
  const std::string compose = read("docker/compose.yml");
  const std::string prom = read("docker/prometheus.yml");
  ASSERT_FALSE(prom.empty()) << "docker/prometheus.yml not found";
  const std::string engine = service_block(compose, "quizflow");
  const std::string port = capture(engine, R"(QUIZFLOW_HTTP_ADDR: *"?[0-9.]*:([0-9]+))");
  ASSERT_FALSE(port.empty()) << "the quizflow service sets no QUIZFLOW_HTTP_ADDR with a port";
  EXPECT_NE(engine.find("- \"" + port + "\""), std::string::npos) << "not exposed: " << port;
  EXPECT_EQ(capture(prom, R"(\n  - job_name: *([a-z_]+))"), "quizflow");
  EXPECT_EQ(capture(prom, R"(\n    metrics_path: *(\S+))"), "/metrics");
  // dns_sd_configs of type A on the service name: one target per replica of --scale.
  EXPECT_NE(prom.find("\n    dns_sd_configs:\n"), std::string::npos);
  EXPECT_EQ(capture(prom, R"(\n      - names: *\[([a-z_-]+)\])"), "quizflow");
  EXPECT_EQ(capture(prom, R"(\n        type: *(\S+))"), "A");
  EXPECT_EQ(capture(prom, R"(\n        port: *([0-9]+))"), port);
  EXPECT_EQ(prom.find("static_configs"), std::string::npos) << "a fixed target misses replicas";

  const std::string svc = service_block(compose, "prometheus");
  ASSERT_FALSE(svc.empty()) << "no prometheus service in docker/compose.yml";
  const std::string config = capture(svc, R"(--config.file=(\S+))");
  EXPECT_NE(svc.find("- ./prometheus.yml:" + config + ":ro"), std::string::npos)
      << "docker/prometheus.yml is not mounted where --config.file=" << config << " reads";
  const std::string tsdb = capture(svc, R"(--storage.tsdb.path=(\S+))");
  EXPECT_TRUE(std::regex_search(svc, std::regex("\n      - [a-z]+:" + tsdb + "\n")))
      << "the TSDB " << tsdb << " is not on a named volume";
  EXPECT_NE(svc.find("    healthcheck:"), std::string::npos);
}

// Grafana's provisioning: the datasource is the compose stack's Prometheus, the dashboard
// provider reads the directory the dashboard is mounted in, and every panel, query and variable
// of the dashboard names the provisioned datasource by its uid.
TEST(DeployFiles, GrafanaIsProvisionedWithPrometheusAndTheDashboard) {
  const std::string compose = read("docker/compose.yml");
  const std::string svc = service_block(compose, "grafana");
  ASSERT_FALSE(svc.empty()) << "no grafana service in docker/compose.yml";
  const std::string ds = read("docker/grafana/provisioning/datasources/prometheus.yml");
  const std::string provider = read("docker/grafana/provisioning/dashboards/quizflow.yml");
  ASSERT_FALSE(ds.empty() || provider.empty()) << "provisioning files not found";
  for (const std::string* f : {&ds, &provider})
    EXPECT_TRUE(std::regex_search(*f, std::regex("(^|\n)apiVersion: 1\n"))) << *f;

  // Mounts: provisioning where Grafana looks for it, dashboards where the provider reads.
  EXPECT_NE(svc.find("- ./grafana/provisioning:/etc/grafana/provisioning:ro"), std::string::npos);
  const std::string path = capture(provider, R"(\n      path: *(\S+))");
  ASSERT_FALSE(path.empty()) << provider;
  EXPECT_NE(svc.find("- ./grafana/dashboards:" + path + ":ro"), std::string::npos)
      << "the dashboards are not mounted at the provider's path " << path;
  EXPECT_NE(svc.find("condition: service_healthy"), std::string::npos) << "after prometheus";
  EXPECT_NE(svc.find("GF_SECURITY_ADMIN_PASSWORD: ${GRAFANA_ADMIN_PASSWORD:-"), std::string::npos)
      << "the admin password comes from the environment";

  // The datasource: the prometheus service on its port, Prometheus' scrape interval.
  EXPECT_EQ(capture(ds, R"(\n    type: *(\S+))"), "prometheus");
  EXPECT_EQ(capture(ds, R"(\n    url: *(\S+))"), "http://prometheus:9090");
  EXPECT_NE(service_block(compose, "prometheus").find(":9090\""), std::string::npos);
  EXPECT_EQ(capture(ds, R"(\n      timeInterval: *(\S+))"),
            capture(read("docker/prometheus.yml"), R"(\n  scrape_interval: *(\S+))"));
  const std::string uid = capture(ds, R"(\n    uid: *(\S+))");
  ASSERT_FALSE(uid.empty()) << "the datasource has no uid for the dashboard to name";

  rapidjson::Document d;
  const std::string json = read("docker/grafana/dashboards/quizflow.json");
  d.Parse(json.c_str());
  ASSERT_FALSE(d.HasParseError()) << "quizflow.json is not JSON";
  ASSERT_TRUE(d.IsObject() && d.HasMember("panels") && d["panels"].IsArray());
  ASSERT_TRUE(d.HasMember("uid") && d["uid"].IsString());
  auto names_uid = [&](const rapidjson::Value& v, const std::string& what) {
    const bool ok = v.IsObject() && v.HasMember("datasource") && v["datasource"].IsObject() &&
                    v["datasource"].HasMember("uid") && v["datasource"]["uid"].IsString() &&
                    v["datasource"]["uid"].GetString() == uid;
    EXPECT_TRUE(ok) << what << " does not name the datasource " << uid;
  };
  std::set<int> ids;
  int targets = 0;
  // Every selector of a metric filters by the replica variable (or the panel ignores it).
  const std::regex selector(R"(\b(quizflow_[a-z0-9_]+|up)(\{[^}]*\})?)");
  for (const auto& p : d["panels"].GetArray()) {
    ASSERT_TRUE(p.HasMember("id") && p["id"].IsInt() && p.HasMember("title"));
    const std::string title = p["title"].GetString();
    EXPECT_TRUE(ids.insert(p["id"].GetInt()).second) << "panel id used twice: " << title;
    EXPECT_TRUE(p.HasMember("gridPos") && p["gridPos"].IsObject()) << title;
    if (std::string(p["type"].GetString()) == "row") continue;
    names_uid(p, "panel '" + title + "'");
    ASSERT_TRUE(p.HasMember("targets") && p["targets"].IsArray() && !p["targets"].Empty()) << title;
    for (const auto& t : p["targets"].GetArray()) {
      ++targets;
      names_uid(t, "a query of '" + title + "'");
      ASSERT_TRUE(t.HasMember("expr") && t["expr"].IsString()) << title;
      const std::string expr = t["expr"].GetString();
      std::smatch job;
      if (std::regex_search(expr, job, std::regex(R"re(job="([^"]*)")re"))) {
        EXPECT_EQ(job[1].str(), capture(read("docker/prometheus.yml"), R"(job_name: *(\S+))"))
            << "'" << title << "' reads another job than docker/prometheus.yml's";
      }
      for (auto it = std::sregex_iterator(expr.begin(), expr.end(), selector);
           it != std::sregex_iterator(); ++it)
        EXPECT_NE((*it)[2].str().find(R"(instance=~"$instance")"), std::string::npos)
            << "'" << title << "': " << (*it)[0] << " is not filtered by the replica variable";
    }
  }
  EXPECT_GE(targets, 30);
  ASSERT_TRUE(d.HasMember("templating") && d["templating"]["list"].IsArray());
  bool instance_var = false;
  for (const auto& v : d["templating"]["list"].GetArray()) {
    names_uid(v, std::string("variable ") + v["name"].GetString());
    instance_var = instance_var || std::string(v["name"].GetString()) == "instance";
  }
  EXPECT_TRUE(instance_var) << "no `instance` variable";
}

// Standard output of a shell command (empty when it fails).
std::string output_of(const std::string& command) {
  std::string out;
  if (FILE* p = ::popen(command.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ::pclose(p);
  }
  return out;
}

// The packages of one mode of scripts/setup: the words of its `packages=(…)` in that case arm.
std::set<std::string> setup_packages(const std::string& mode) {
  const std::string setup = read("scripts/setup");
  const auto arm = setup.find("\n  " + mode + ")");
  std::set<std::string> out;
  if (arm == std::string::npos) return out;
  const auto open = setup.find("packages=(", arm);
  const auto close = setup.find(')', open);
  std::istringstream words(setup.substr(open + 10, close - open - 10));
  for (std::string w; words >> w;) out.insert(w);
  return out;
}

// The runtime stage installs `setup --runtime` only: it must hold the Debian package of every
// shared library the built binary links directly (DT_NEEDED), or the image would not start.
// Those of the base image (the C and C++ runtime) are there already.
TEST(DeployFiles, TheRuntimePackagesHoldEveryLibraryTheBinaryLinks) {
  const auto runtime = setup_packages("--runtime");
  ASSERT_GT(runtime.size(), 5u) << "no --runtime list in scripts/setup";
  const std::string bin = QF_QUIZFLOW_BIN;
  const std::string needed = output_of("objdump -p '" + bin + "' | awk '/NEEDED/ {print $2}'");
  const std::string ldd = output_of("ldd '" + bin + "'");
  ASSERT_FALSE(needed.empty()) << "objdump -p " << bin << " listed no NEEDED library";
  const std::set<std::string> base = {"libc6", "libstdc++6", "libgcc-s1"};
  std::istringstream libs(needed);
  int checked = 0;
  for (std::string lib; libs >> lib;) {
    // A sanitizer build links its runtime; the image's Release build does not.
    if (std::regex_search(lib, std::regex("^lib(a|ub|t|l)san\\.so"))) continue;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(
        ldd, m,
        std::regex("\n\\s*" + std::regex_replace(lib, std::regex(R"([.+])"), R"(\$&)") +
                   R"( => (\S+))")))
        << lib << " not resolved by ldd:\n"
        << ldd;
    const std::string path = m[1];
    // dpkg knows a file under the path it was installed at (/lib or /usr/lib: usrmerge).
    std::string owner =
        output_of("dpkg -S '" + path + "' 2>/dev/null || dpkg -S '/usr" + path + "' 2>/dev/null");
    owner = owner.substr(0, owner.find_first_of(":\n"));
    ASSERT_FALSE(owner.empty()) << "no Debian package owns " << path;
    ++checked;
    EXPECT_TRUE(runtime.count(owner) || base.count(owner))
        << lib << " (" << path << ") comes from " << owner
        << ", which scripts/setup --runtime does not install";
  }
  EXPECT_GE(checked, 7);
}

}  // namespace
}  // namespace quizflow
