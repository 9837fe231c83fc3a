// The deployment files against the code they configure (issue 14; no Docker engine runs here):
// every quizflow key docker/compose.yml sets is a key of the Config, and docker/Dockerfile
// installs packages only through scripts/setup (the one list), runs as a non-root user and
// checks /health.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

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

// The environment keys of one service of a compose file (its `environment:` mapping).
std::set<std::string> service_env(const std::string& compose, const std::string& service) {
  std::set<std::string> keys;
  std::istringstream in(compose);
  std::string line;
  bool in_service = false, in_env = false;
  const std::regex key(R"(^      ([A-Z][A-Z0-9_]*):)");
  while (std::getline(in, line)) {
    if (line.rfind("  ", 0) == 0 && line.size() > 2 && line[2] != ' ' && line[2] != '#') {
      in_service = line == "  " + service + ":";
      in_env = false;
      continue;
    }
    if (!in_service) continue;
    if (line.rfind("    ", 0) == 0 && line.size() > 4 && line[4] != ' ') {
      in_env = line == "    environment:";
      continue;
    }
    std::smatch m;
    if (in_env && std::regex_search(line, m, key)) keys.insert(m[1]);
  }
  return keys;
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
  EXPECT_NE(df.find("RUN bash scripts/setup &&"), std::string::npos) << "build stage";
  EXPECT_NE(df.find("setup --runtime"), std::string::npos) << "runtime stage";
  EXPECT_NE(df.find("setup --nginx"), std::string::npos) << "front stage";
  const std::string setup = read("scripts/setup");
  for (const char* mode : {"--runtime)", "--nginx)"})
    EXPECT_NE(setup.find(mode), std::string::npos) << "scripts/setup has no " << mode;
  EXPECT_TRUE(std::regex_search(df, std::regex(R"(\nUSER quizflow\n)")));
  EXPECT_TRUE(std::regex_search(df, std::regex(R"(HEALTHCHECK[^\n]*\n[^\n]*/health)")));
  EXPECT_NE(df.find("FROM debian:12 AS build"), std::string::npos);
}

}  // namespace
}  // namespace quizflow
