// Configuration (spec §7): defaults, JSON file, environment winning, bad values naming the key,
// and secrets never shown (spec §6: logs never contain a password or token).
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <unistd.h>

extern char** environ;

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"

namespace quizflow {
namespace {

// Environment variables quizflow may read (spec §7), by prefix, so keys added later are covered.
bool quizflow_var(const std::string& name) {
  for (const char* p : {"DATABASE_URL", "KAFKA_", "QUIZFLOW_", "DB_", "BATCH_"})
    if (name.rfind(p, 0) == 0) return true;
  return false;
}

std::vector<std::string> quizflow_vars_set() {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) {
    const std::string kv(*e);
    const std::string name = kv.substr(0, kv.find('='));
    if (quizflow_var(name)) out.push_back(name);
  }
  return out;
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Every test starts from an environment without quizflow variables and gets the original one
// back afterwards.
class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const auto& k : quizflow_vars_set()) saved_[k] = std::getenv(k.c_str());
    clear_env();
  }
  static void clear_env() {
    for (const auto& k : quizflow_vars_set()) ::unsetenv(k.c_str());
  }
  void TearDown() override {
    clear_env();
    for (const auto& [k, v] : saved_) ::setenv(k.c_str(), v.c_str(), 1);
    for (const auto& f : files_) std::remove(f.c_str());
  }

  void env(const std::string& k, const std::string& v) { ::setenv(k.c_str(), v.c_str(), 1); }

  std::string file(const std::string& text) {
    const std::string path = ::testing::TempDir() + "quizflow_config_test_" +
                             std::to_string(::getpid()) + "_" + std::to_string(files_.size()) +
                             ".json";
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }

  // Runs load_config and returns the ConfigError's key, or nullopt when it did not throw.
  std::optional<std::string> load_error(const std::string& path) {
    try {
      load_config(path);
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(e.key), std::string::npos) << e.what();
      return e.key;
    }
    return std::nullopt;
  }

  std::map<std::string, std::string> saved_;
  std::vector<std::string> files_;
};

TEST_F(ConfigTest, DefaultsFromTheSpec) {
  const Config c = load_config("");
  EXPECT_EQ(c.db_pool_size, 30);
  EXPECT_EQ(c.db_max_overflow, 50);
  EXPECT_EQ(c.kafka_group_id, "quizflow");
  EXPECT_EQ(c.http_addr, "127.0.0.1:8000");
  EXPECT_EQ(c.topic_answers, "quiz.answers");
  EXPECT_EQ(c.topic_notifications, "quiz.notifications");
  EXPECT_EQ(c.topic_dlq, "quiz.answers.dlq");
  EXPECT_FALSE(c.consume_answers);
  EXPECT_TRUE(c.database_url.empty());
  EXPECT_TRUE(c.kafka_brokers.empty());
  EXPECT_TRUE(c.api_token.empty());
}

TEST_F(ConfigTest, FileValues) {
  const Config c = load_config(
      file("{\"database_url\":\"postgresql://u:p@h/db\",\"batch_max_size\":100,"
           "\"quizflow_consume_answers\":true,\"db_pool_size\":\"12\","
           "\"kafka_topic_answers\":\"answers.v2\",\"quizflow_http_addr\":\"0.0.0.0:9000\"}"));
  EXPECT_EQ(c.database_url, "postgresql://u:p@h/db");
  EXPECT_EQ(c.batch_max_size, 100);
  EXPECT_TRUE(c.consume_answers);
  EXPECT_EQ(c.db_pool_size, 12);
  EXPECT_EQ(c.topic_answers, "answers.v2");
  EXPECT_EQ(c.http_addr, "0.0.0.0:9000");
  EXPECT_EQ(c.db_max_overflow, 50);  // untouched keys keep their defaults
}

TEST_F(ConfigTest, EnvironmentWinsOverTheFile) {
  const std::string path = file(
      "{\"batch_max_size\":100,\"kafka_group_id\":\"from-file\",\"db_pool_size\":12,"
      "\"quizflow_consume_answers\":true}");
  env("BATCH_MAX_SIZE", "200");
  env("KAFKA_GROUP_ID", "from-env");
  env("QUIZFLOW_CONSUME_ANSWERS", "false");
  const Config c = load_config(path);
  EXPECT_EQ(c.batch_max_size, 200);
  EXPECT_EQ(c.kafka_group_id, "from-env");
  EXPECT_FALSE(c.consume_answers);
  EXPECT_EQ(c.db_pool_size, 12);  // not in the environment: the file's value
}

TEST_F(ConfigTest, EnvironmentOnly) {
  env("DB_POOL_SIZE", "7");
  env("DB_MAX_OVERFLOW", "0");
  env("QUIZFLOW_CONSUME_ANSWERS", "true");
  env("KAFKA_BROKERS", "k1:9092,k2:9092");
  env("QUIZFLOW_API_TOKEN", "t0k");
  env("BATCH_MAX_DELAY_MS", "0");
  const Config c = load_config("");
  EXPECT_EQ(c.db_pool_size, 7);
  EXPECT_EQ(c.db_max_overflow, 0);
  EXPECT_TRUE(c.consume_answers);
  EXPECT_EQ(c.kafka_brokers, "k1:9092,k2:9092");
  EXPECT_EQ(c.api_token, "t0k");
  EXPECT_EQ(c.batch_max_delay_ms, 0);
}

TEST_F(ConfigTest, UnknownFileKeyIsNamed) {
  EXPECT_EQ(load_error(file("{\"batch_max_sizee\":100}")), "batch_max_sizee");
  EXPECT_EQ(load_error(file("{\"db_pool_size\":5,\"password\":\"x\"}")), "password");
}

TEST_F(ConfigTest, BadEnvironmentValuesNameTheKey) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"BATCH_MAX_SIZE", "abc"},
      {"BATCH_MAX_SIZE", "12abc"},
      {"BATCH_MAX_SIZE", "1.5"},
      {"BATCH_MAX_SIZE", ""},
      {"BATCH_MAX_SIZE", "0"},
      {"BATCH_MAX_SIZE", "-5"},
      {"BATCH_MAX_SIZE", "99999999999999999999"},
      {"BATCH_MAX_DELAY_MS", "-1"},
      {"DB_POOL_SIZE", "0"},
      {"DB_POOL_SIZE", "1001"},
      {"DB_POOL_SIZE", "thirty"},
      {"DB_MAX_OVERFLOW", "-1"},
      {"DB_WRITERS", "0"},
      {"QUIZFLOW_HTTP_THREADS", "0"},
      {"QUIZFLOW_HTTP_THREADS", "65"},
      {"QUIZFLOW_HTTP_MAX_BODY", "10"},
      {"QUIZFLOW_HTTP_MAX_BATCH", "0"},
      {"QUIZFLOW_MAX_IN_FLIGHT", "0"},
      {"QUIZFLOW_CONSUME_ANSWERS", "maybe"},
      {"QUIZFLOW_HTTP_ADDR", "nonsense"},
      {"QUIZFLOW_HTTP_ADDR", ":8000"},
      {"QUIZFLOW_HTTP_ADDR", "host:"},
      {"QUIZFLOW_HTTP_ADDR", "host:65536"},
      {"QUIZFLOW_HTTP_ADDR", "host:http"},
      {"QUIZFLOW_LOG_LEVEL", "verbose"},
      {"QUIZFLOW_LOG_FORMAT", "xml"},
      {"DATABASE_URL", "mysql://u@h/db"},
  };
  for (const auto& [k, v] : bad) {
    clear_env();  // clean environment for each case
    env(k, v);
    EXPECT_EQ(load_error(""), k) << k << "=" << v;
  }
}

TEST_F(ConfigTest, OutOfRangeIntegersAreNotSilentlyTruncated) {
  // 2^32 + 1 and 2^32 + 5 do not fit the int fields; truncated to 32 bits they would read as the
  // valid values 1 and 5.
  for (const auto& [k, v] :
       std::vector<std::pair<std::string, std::string>>{{"DB_POOL_SIZE", "4294967297"},
                                                        {"BATCH_MAX_SIZE", "4294967301"},
                                                        {"QUIZFLOW_HTTP_THREADS", "4294967298"}}) {
    clear_env();
    env(k, v);
    std::optional<std::string> err = load_error("");
    EXPECT_EQ(err, k) << k << "=" << v << " was accepted";
  }
}

TEST_F(ConfigTest, BadFileValuesNameTheKey) {
  for (const std::string& text :
       {std::string("{\"db_pool_size\":\"abc\"}"), std::string("{\"db_pool_size\":1.5}"),
        std::string("{\"db_pool_size\":0}"), std::string("{\"db_pool_size\":null}"),
        std::string("{\"db_pool_size\":[5]}"), std::string("{\"db_pool_size\":true}")}) {
    auto err = load_error(file(text));
    ASSERT_TRUE(err.has_value()) << text;
    EXPECT_EQ(upper(*err), "DB_POOL_SIZE") << text;
  }
}

TEST_F(ConfigTest, UnreadableOrNonObjectFile) {
  EXPECT_TRUE(load_error(::testing::TempDir() + "no_such_quizflow_config.json").has_value());
  EXPECT_TRUE(load_error(file("not json")).has_value());
  EXPECT_TRUE(load_error(file("[1,2]")).has_value());
  EXPECT_TRUE(load_error(file("")).has_value());
  EXPECT_TRUE(load_error(file("{\"db_pool_size\":5} trailing")).has_value());
}

// The key named by the ConfigError validate_config() throws for `c`, or nullopt when it passes.
std::optional<std::string> key_of(const Config& c) {
  try {
    validate_config(c);
  } catch (const ConfigError& e) {
    return e.key;
  }
  return std::nullopt;
}

TEST_F(ConfigTest, ValidateConfigNamesTheKey) {
  EXPECT_EQ(key_of(Config{}), std::nullopt);
  Config c;
  c.db_pool_size = 0;
  EXPECT_EQ(key_of(c), "DB_POOL_SIZE");
  c = Config{};
  c.batch_max_size = 0;
  EXPECT_EQ(key_of(c), "BATCH_MAX_SIZE");
  c = Config{};
  c.http_addr = "no-port";
  EXPECT_EQ(key_of(c), "QUIZFLOW_HTTP_ADDR");
  c = Config{};
  c.log_level = "loud";
  EXPECT_EQ(key_of(c), "QUIZFLOW_LOG_LEVEL");
  c = Config{};
  c.database_url = "host=db user=quiz";
  EXPECT_EQ(key_of(c), std::nullopt);
  c.database_url = "postgresql://db/quiz";
  EXPECT_EQ(key_of(c), std::nullopt);
}

TEST_F(ConfigTest, EmptyTopicNamesItsOwnKey) {
  Config c;
  c.topic_answers = "";
  EXPECT_EQ(key_of(c), "KAFKA_TOPIC_ANSWERS");
  c = Config{};
  c.topic_notifications = "";
  EXPECT_EQ(key_of(c), "KAFKA_TOPIC_NOTIFICATIONS");
  c = Config{};
  c.topic_dlq = std::string(250, 't');
  EXPECT_EQ(key_of(c), "KAFKA_TOPIC_DLQ");
}

TEST_F(ConfigTest, SplitHostPort) {
  std::string host;
  uint16_t port = 1;
  split_host_port("127.0.0.1:8000", "K", host, port);
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8000);
  split_host_port("localhost:0", "K", host, port);
  EXPECT_EQ(host, "localhost");
  EXPECT_EQ(port, 0);
  split_host_port("[::1]:65535", "K", host, port);
  EXPECT_EQ(host, "[::1]");
  EXPECT_EQ(port, 65535);
  for (const char* bad : {"", "host", ":80", "host:", "host:65536", "host:-1", "host:abc"}) {
    try {
      split_host_port(bad, "MY_KEY", host, port);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.key, "MY_KEY") << bad;
    }
  }
}

// ---- secrets -------------------------------------------------------------------------------

TEST(MaskUrl, MasksTheUserinfoPassword) {
  EXPECT_EQ(mask_url("postgresql://quiz:hunter2pw@db:5432/quizflow"),
            "postgresql://quiz:***@db:5432/quizflow");
  EXPECT_EQ(mask_url("postgres://quiz:hunter2pw@db/quizflow?sslmode=disable"),
            "postgres://quiz:***@db/quizflow?sslmode=disable");
  EXPECT_EQ(mask_url("postgresql://quiz@db/quizflow"), "postgresql://quiz@db/quizflow");
  EXPECT_EQ(mask_url("postgresql://db:5432/quizflow"), "postgresql://db:5432/quizflow");
  EXPECT_EQ(mask_url(""), "");
  EXPECT_EQ(mask_url("host=db user=quiz password=hunter2pw dbname=quizflow"),
            "host=db user=quiz password=*** dbname=quizflow");
  EXPECT_EQ(mask_url("host=db password=hunter2pw"), "host=db password=***");
}

// Each way libpq accepts a password in DATABASE_URL: describe_config must not show it.
struct UrlCase {
  const char* name;
  const char* url;
  const char* secret;  // a part of the password that must not appear
};

void PrintTo(const UrlCase& c, std::ostream* os) { *os << c.url; }

class DescribeHidesPassword : public ::testing::TestWithParam<UrlCase> {};

TEST_P(DescribeHidesPassword, InDatabaseUrl) {
  const UrlCase& p = GetParam();
  Config c;
  c.database_url = p.url;
  const std::string out = describe_config(c);
  EXPECT_EQ(out.find(p.secret), std::string::npos)
      << "describe_config shows '" << p.secret << "' of " << p.url << ":\n"
      << out;
  EXPECT_EQ(mask_url(p.url).find(p.secret), std::string::npos) << mask_url(p.url);
}

INSTANTIATE_TEST_SUITE_P(
    UrlForms, DescribeHidesPassword,
    ::testing::Values(
        UrlCase{"Userinfo", "postgresql://quiz:hunter2pw@db:5432/quizflow", "hunter2pw"},
        UrlCase{"UserinfoWithQuery", "postgres://quiz:hunter2pw@db/quizflow?sslmode=require",
                "hunter2pw"},
        UrlCase{"PasswordWithoutUser", "postgresql://:hunter2pw@db/quizflow", "hunter2pw"},
        UrlCase{"KeyValue", "host=db user=quiz password=hunter2pw dbname=quizflow", "hunter2pw"},
        UrlCase{"KeyValueFirst", "password=hunter2pw host=db", "hunter2pw"},
        UrlCase{"QueryParameter", "postgresql://quiz@db/quizflow?password=hunter2pw", "hunter2pw"},
        UrlCase{"QueryParameterAmongOthers",
                "postgresql://db/quizflow?user=quiz&password=hunter2pw&sslmode=disable",
                "hunter2pw"},
        UrlCase{"KeyValueQuotedWithSpace", "host=db password='correct horse' dbname=quizflow",
                "horse"},
        UrlCase{"KeyValueSpacesAroundEquals", "host=db password = hunter2pw dbname=quizflow",
                "hunter2pw"}),
    [](const ::testing::TestParamInfo<UrlCase>& i) { return std::string(i.param.name); });

TEST(Describe, HidesTheTokenAndShowsTheRest) {
  Config c;
  c.api_token = "tok-SECRET-123";
  c.database_url = "postgresql://quiz:hunter2pw@db:5432/quizflow";
  c.kafka_brokers = "kafka:9092";
  c.batch_max_size = 777;
  const std::string out = describe_config(c);
  EXPECT_EQ(out.find("tok-SECRET-123"), std::string::npos) << out;
  EXPECT_EQ(out.find("SECRET"), std::string::npos) << out;
  EXPECT_EQ(out.find("hunter2pw"), std::string::npos) << out;
  // What is not secret stays visible for the operator.
  EXPECT_NE(out.find("kafka:9092"), std::string::npos) << out;
  EXPECT_NE(out.find("777"), std::string::npos) << out;
  EXPECT_NE(out.find("db:5432/quizflow"), std::string::npos) << out;
  EXPECT_NE(out.find("QUIZFLOW_API_TOKEN"), std::string::npos) << out;
}

// ---------------------------------------------------------------------------------------------
// docs/configuration.md against the Config (issue 14): the table's keys are exactly the Config's,
// each default is what check-config shows for an empty configuration, each file key is read from
// a file, each range's bounds are accepted and one past them refused naming the key, and each
// listed choice is accepted and another value refused.
// ---------------------------------------------------------------------------------------------

struct DocRow {
  std::string env, file_key, default_value, allowed;
};

std::string strip_ticks(std::string s) {
  if (s.size() >= 2 && s.front() == '`' && s.back() == '`') s = s.substr(1, s.size() - 2);
  return s;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(' ');
  const auto e = s.find_last_not_of(' ');
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// The rows of the table under "## Keys".
std::vector<DocRow> documented_keys() {
  std::ifstream in(std::string(QF_SOURCE_DIR) + "/docs/configuration.md");
  std::vector<DocRow> rows;
  std::string line;
  bool in_keys = false;
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) in_keys = line == "## Keys";
    if (!in_keys || line.rfind("| `", 0) != 0) continue;
    std::vector<std::string> cells;
    std::stringstream ss(line.substr(1));
    std::string cell;
    while (std::getline(ss, cell, '|')) cells.push_back(trim(cell));
    if (!cells.empty() && cells.back().empty()) cells.pop_back();
    EXPECT_EQ(cells.size(), 5u) << "a row of five cells (no '|' inside one): " << line;
    if (cells.size() < 4) continue;
    rows.push_back({strip_ticks(cells[0]), strip_ticks(cells[1]),
                    cells[2] == "empty" ? "" : strip_ticks(cells[2]), cells[3]});
  }
  return rows;
}

std::map<std::string, std::string> described_defaults() {
  rapidjson::Document d;
  const std::string json = describe_config(Config{});
  d.Parse(json.c_str());
  std::map<std::string, std::string> out;
  for (auto m = d.MemberBegin(); m != d.MemberEnd(); ++m)
    out[m->name.GetString()] = m->value.GetString();
  return out;
}

TEST_F(ConfigTest, TheConfigurationPageListsExactlyTheConfigsKeysAndDefaults) {
  const auto rows = documented_keys();
  const auto defaults = described_defaults();
  ASSERT_GT(defaults.size(), 30u);
  std::set<std::string> documented;
  for (const DocRow& r : rows) {
    EXPECT_TRUE(documented.insert(r.env).second) << r.env << " documented twice";
    const auto it = defaults.find(r.env);
    if (it == defaults.end()) {
      ADD_FAILURE() << r.env << " is documented but is not a Config key";
      continue;
    }
    EXPECT_EQ(r.default_value, it->second) << "default of " << r.env;
    std::string lower = r.env;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_EQ(r.file_key, lower) << "file key of " << r.env;
    // The file key is read from a file, with the documented default accepted.
    EXPECT_EQ(load_error(file("{\"" + r.file_key + "\":\"" + r.default_value + "\"}")),
              std::nullopt)
        << r.file_key;
  }
  for (const auto& [key, value] : defaults)
    EXPECT_TRUE(documented.count(key))
        << key << " (default '" << value << "') is missing from docs/configuration.md";
}

TEST_F(ConfigTest, TheConfigurationPagesRangesAndChoicesAreWhatTheCodeAccepts) {
  const auto rows = documented_keys();
  const std::regex range("^(\\d+)\xE2\x80\x93(\\d+)");  // "lo–hi" (an en dash)
  const std::regex choices("^`[^`]+`(, `[^`]+`)+$");
  int ranges = 0, lists = 0;
  for (const DocRow& r : rows) {
    // The error for the key when its file value is `json`, or nullopt when it loads (or an
    // other key is the one refused: ranges that depend on each other).
    auto refused = [&](const std::string& json) -> std::optional<std::string> {
      try {
        load_config(file("{\"" + r.file_key + "\":" + json + "}"));
      } catch (const ConfigError& e) {
        if (e.key == r.env) return std::string(e.what());
      }
      return std::nullopt;
    };
    std::smatch m;
    if (std::regex_search(r.allowed, m, range)) {
      ++ranges;
      const int64_t lo = std::stoll(m[1]), hi = std::stoll(m[2]);
      // "1–249 characters": a length; otherwise a number.
      const bool length = m.suffix().str().rfind(" characters", 0) == 0;
      auto value = [&](int64_t n) {
        return length ? "\"" + std::string(static_cast<size_t>(n), 'a') + "\"" : std::to_string(n);
      };
      EXPECT_TRUE(refused(value(lo - 1))) << r.env << " accepts " << lo - 1;
      EXPECT_TRUE(refused(value(hi + 1))) << r.env << " accepts " << hi + 1;
      for (const int64_t ok : {lo, hi}) {
        const auto error = refused(value(ok));
        // A bound may still be refused by a rule tying two keys together (the request deadline
        // below the header timeout), never by its own range.
        EXPECT_TRUE(!error || (error->find("between") == std::string::npos &&
                               error->find("characters") == std::string::npos))
            << r.env << " refuses its documented bound " << ok << ": " << *error;
      }
    } else if (std::regex_match(r.allowed, choices)) {
      ++lists;
      const std::regex tick("`([^`]+)`");
      for (auto it = std::sregex_iterator(r.allowed.begin(), r.allowed.end(), tick);
           it != std::sregex_iterator(); ++it)
        EXPECT_EQ(refused("\"" + (*it)[1].str() + "\""), std::nullopt)
            << r.env << " refuses its documented value " << (*it)[1];
      EXPECT_TRUE(refused("\"not-a-listed-value\"")) << r.env << " accepts any value";
    }
  }
  // The page states ranges and choices the test can read (a format change must not make it
  // check nothing).
  EXPECT_GT(ranges, 25);
  EXPECT_GE(lists, 4);
}

TEST_F(ConfigTest, ErrorsNeverEchoSecrets) {
  env("DATABASE_URL", "mysql://quiz:hunter2pw@db/quizflow");
  try {
    load_config("");
    ADD_FAILURE() << "mysql URL accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).find("hunter2pw"), std::string::npos) << e.what();
  }
  clear_env();
  env("QUIZFLOW_API_TOKEN", "tok-SECRET-123");
  env("DB_POOL_SIZE", "0");
  try {
    load_config("");
    ADD_FAILURE() << "DB_POOL_SIZE=0 accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).find("SECRET"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace quizflow
