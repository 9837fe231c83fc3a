// End-to-end: the built quizflow binary (QUIZFLOW_BIN) against the PostgreSQL in DATABASE_URL,
// driven over HTTP only (spec §3, §4). Each server's output goes to a file in a temporary
// directory and is printed when a test fails.
//
// Quiz ids are derived from the clock (ms × 100 + a counter), so runs sharing one database do not
// clash. The tests of the suite HttpE2E share one server and run in any order (ctest shuffles
// them): each creates its own quizzes and event ids, and a test that stops or reconfigures a
// server starts one of its own.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "e2e/server_fixture.h"

namespace {

using namespace qf_e2e;

constexpr const char* kToken = "secret-token-123";

// Every quiz of this file has two reward tiers.
const std::vector<RewardSpec> kRewards = {{1, 1, "gold"}, {2, 3, "silver"}};

// The error body of §3: {"error":{"code":…,"message":…,"field":…}}.
std::string error_code(const HttpResponse& r) {
  auto d = parse(r);
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("error")) return "<no error object>";
  return str_at(d, "error.code");
}

class HttpE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    bin_ = quizflow_bin(setup_error_);
    if (bin_.empty()) return;
    if (database_url(setup_error_).empty()) return;
    try {
      dir_ = make_temp_dir("quizflow-e2e");
    } catch (const std::exception& e) {
      setup_error_ = e.what();
      return;
    }
    id_base_ = wall_ms() * 100;
    server_ = std::make_unique<ServerProcess>(bin_, dir_, "main", main_env());
    if (std::string err = server_->start(); !err.empty()) {
      setup_error_ = "starting " + bin_ + ": " + err + "\n" + server_->log();
      server_.reset();
    }
  }

  static void TearDownTestSuite() {
    if (server_ && server_->running()) {
      std::string why;
      if (server_->terminate(20s, why) != std::optional<int>(0)) {
        std::fprintf(stderr, "the shared server did not stop cleanly: %s\n", why.c_str());
        print_log(*server_);
        any_failure_ = true;
      }
    }
    server_.reset();
    if (!dir_.empty() && !any_failure_)
      std::filesystem::remove_all(dir_);
    else if (!dir_.empty())
      std::fprintf(stderr, "server logs kept in %s\n", dir_.c_str());
  }

  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  void TearDown() override {
    if (!HasFailure()) return;
    any_failure_ = true;
    if (server_) print_log(*server_);
  }

  static int64_t next_quiz_id() { return id_base_ + counter_++; }

  // The environment of the shared server (a test's own server may start with the same one).
  static Env main_env() {
    return {{"QUIZFLOW_HTTP_ADDR", "127.0.0.1:0"},
            {"QUIZFLOW_HTTP_MAX_BODY", "65536"},
            {"QUIZFLOW_API_TOKEN", std::nullopt}};
  }

  HttpClient client() const { return server_->client(); }

  // Creates a quiz open from a minute ago for an hour; asserts 201.
  int64_t create_quiz(HttpClient& c) {
    const int64_t id = next_quiz_id();
    const HttpResponse r = c.request("POST", "/v1/quizzes", open_quiz_json(id, kRewards));
    EXPECT_EQ(r.status, 201) << show(r);
    return id;
  }

  static inline std::string setup_error_, bin_, dir_;
  static inline std::unique_ptr<ServerProcess> server_;
  static inline int64_t id_base_ = 0;
  static inline int counter_ = 0;
  static inline bool any_failure_ = false;
};

TEST_F(HttpE2E, QuizCreateIsIdempotentConflictsAndValidates) {
  HttpClient c = client();
  const int64_t id = next_quiz_id();
  const int64_t now = wall_ms();
  const std::string body =
      quiz_json(id, "capitals", now - 60'000, now + 3'600'000, default_questions(), kRewards);

  HttpResponse r = c.request("POST", "/v1/quizzes", body);
  ASSERT_EQ(r.status, 201) << show(r);
  ASSERT_NE(r.header("content-type"), nullptr);
  EXPECT_NE(r.header("content-type")->find("application/json"), std::string::npos);
  auto d = parse(r);
  ASSERT_FALSE(d.HasParseError()) << show(r);
  EXPECT_EQ(int_at(d, "quiz_id"), id) << show(r);
  EXPECT_EQ(str_at(d, "state"), "open") << show(r);

  r = c.request("POST", "/v1/quizzes", body);
  EXPECT_EQ(r.status, 200) << "the same quiz again: " << show(r);

  r = c.request("POST", "/v1/quizzes",
                quiz_json(id, "capitals, harder", now - 60'000, now + 3'600'000,
                          default_questions(), kRewards));
  EXPECT_EQ(r.status, 409) << "a different quiz with the same id: " << show(r);
  EXPECT_EQ(error_code(r), "conflict") << show(r);

  // option_count 11 is out of range (2-10).
  r = c.request("POST", "/v1/quizzes",
                quiz_json(next_quiz_id(), "bad", now - 60'000, now + 3'600'000,
                          {{1, 11, 0, 1000, 20000}}, kRewards));
  EXPECT_EQ(r.status, 422) << show(r);
  d = parse(r);
  ASSERT_TRUE(!d.HasParseError() && d.IsObject() && d.HasMember("error")) << show(r);
  EXPECT_EQ(str_at(d["error"], "code"), "schema") << show(r);
  EXPECT_EQ(str_at(d["error"], "field"), "questions[0].option_count") << show(r);

  r = c.request("POST", "/v1/quizzes", "{\"quiz_id\": 1,");
  EXPECT_EQ(r.status, 400) << show(r);
  EXPECT_EQ(error_code(r), "malformed_json") << show(r);

  r = c.request("GET", "/v1/quizzes/" + std::to_string(id));
  ASSERT_EQ(r.status, 200) << show(r);
  d = parse(r);
  EXPECT_EQ(int_at(d, "quiz_id"), id) << show(r);
  EXPECT_EQ(str_at(d, "title"), "capitals") << show(r);
  EXPECT_EQ(str_at(d, "state"), "open") << show(r);
  ASSERT_TRUE(d.HasMember("questions") && d["questions"].IsArray()) << show(r);
  EXPECT_EQ(d["questions"].Size(), default_questions().size()) << show(r);

  const int64_t unknown = next_quiz_id();  // never created
  r = c.request("GET", "/v1/quizzes/" + std::to_string(unknown));
  EXPECT_EQ(r.status, 404) << show(r);
  EXPECT_EQ(error_code(r), "not_found") << show(r);
}

TEST_F(HttpE2E, UnknownPathsAre404AndKnownPathsWithTheWrongMethod405) {
  HttpClient c = client();
  for (const char* path : {"/nope", "/v2/answers", "/monitoring", "/metrics/x", "/health/x"}) {
    const HttpResponse r = c.request("GET", path);
    EXPECT_EQ(r.status, 404) << path << " " << show(r);
    EXPECT_EQ(error_code(r), "not_found") << path << " " << show(r);
  }
  const std::pair<const char*, const char*> wrong[] = {
      {"POST", "/health"},      {"DELETE", "/monitoring/stats"},
      {"POST", "/metrics"},     {"PUT", "/"},
      {"GET", "/v1/answers"},   {"DELETE", "/v1/quizzes"},
      {"POST", "/v1/quizzes/1"}};
  for (const auto& [method, path] : wrong) {
    const HttpResponse r = c.request(method, path, "{}");
    EXPECT_EQ(r.status, 405) << method << " " << path << " " << show(r);
    EXPECT_EQ(error_code(r), "method_not_allowed") << method << " " << path << " " << show(r);
  }
}

TEST_F(HttpE2E, SingleAnswerIsAcceptedWithTheBodyOfSpec3) {
  HttpClient c = client();
  const int64_t quiz = create_quiz(c);
  const std::string eid = "e2e-" + std::to_string(quiz) + "-single";
  const HttpResponse r =
      c.request("POST", "/v1/answers", answer_json({eid, quiz, 1, 1, 2, wall_ms(), 1500}));
  ASSERT_EQ(r.status, 200) << show(r);
  ASSERT_NE(r.header("content-type"), nullptr);
  EXPECT_NE(r.header("content-type")->find("application/json"), std::string::npos);
  auto d = parse(r);
  ASSERT_FALSE(d.HasParseError()) << show(r);
  ASSERT_TRUE(d.IsObject()) << show(r);
  // {"accepted":n,"duplicates":n,"rejected":n,"results":[{"event_id":"…","status":"…"}]}
  EXPECT_EQ(int_at(d, "accepted"), 1) << show(r);
  EXPECT_EQ(int_at(d, "duplicates"), 0) << show(r);
  EXPECT_EQ(int_at(d, "rejected"), 0) << show(r);
  ASSERT_TRUE(d.HasMember("results") && d["results"].IsArray()) << show(r);
  ASSERT_EQ(d["results"].Size(), 1u) << show(r);
  const auto& item = d["results"][0];
  ASSERT_TRUE(item.IsObject()) << show(r);
  EXPECT_EQ(str_at(item, "event_id"), eid) << show(r);
  EXPECT_EQ(str_at(item, "status"), "accepted") << show(r);
}

TEST_F(HttpE2E, BatchGivesPerItemResultsInInputOrder) {
  HttpClient c = client();
  const int64_t quiz = create_quiz(c);
  const std::string prefix = "e2e-" + std::to_string(quiz) + "-";
  const int64_t now = wall_ms();
  HttpResponse r =
      c.request("POST", "/v1/answers", answer_json({prefix + "first", quiz, 1, 1, 2, now, 100}));
  ASSERT_EQ(r.status, 200) << show(r);

  const std::vector<std::string> items = {
      answer_json({prefix + "valid", quiz, 2, 1, 0, now, 200}),
      answer_json({prefix + "first", quiz, 1, 1, 2, now, 100}),             // duplicate event_id
      answer_json({prefix + "noquiz", next_quiz_id(), 3, 1, 0, now, 300}),  // never created
      R"({"event_id":")" + prefix + R"(schema","quiz_id":)" + std::to_string(quiz) +
          R"(,"user_id":"seven","question_id":1,"option_id":0,"answered_at":")" + rfc3339(now) +
          R"(","elapsed_ms":10})",
  };
  r = c.request("POST", "/v1/answers", batch_json(items));
  ASSERT_EQ(r.status, 200) << show(r);
  auto d = parse(r);
  ASSERT_TRUE(!d.HasParseError() && d.IsObject()) << show(r);
  EXPECT_EQ(int_at(d, "accepted"), 1) << show(r);
  EXPECT_EQ(int_at(d, "duplicates"), 1) << show(r);
  EXPECT_EQ(int_at(d, "rejected"), 2) << show(r);
  ASSERT_TRUE(d.HasMember("results") && d["results"].IsArray()) << show(r);
  ASSERT_EQ(d["results"].Size(), 4u) << show(r);
  const auto& res = d["results"];
  EXPECT_EQ(str_at(res[0], "event_id"), prefix + "valid") << show(r);
  EXPECT_EQ(str_at(res[0], "status"), "accepted") << show(r);
  EXPECT_EQ(str_at(res[1], "event_id"), prefix + "first") << show(r);
  EXPECT_EQ(str_at(res[1], "status"), "duplicate") << show(r);
  EXPECT_EQ(str_at(res[2], "event_id"), prefix + "noquiz") << show(r);
  EXPECT_EQ(str_at(res[2], "status"), "rejected") << show(r);
  EXPECT_EQ(str_at(res[2], "code"), "unknown_quiz") << show(r);
  EXPECT_FALSE(str_at(res[2], "message").empty()) << show(r);
  EXPECT_EQ(str_at(res[3], "status"), "rejected") << show(r);
  EXPECT_EQ(str_at(res[3], "code"), "schema") << show(r);
  EXPECT_EQ(str_at(res[3], "field"), "user_id") << show(r);
  EXPECT_FALSE(str_at(res[3], "message").empty()) << show(r);
}

TEST_F(HttpE2E, SameEventIdTwiceInOneBatchIsOneAcceptedOneDuplicate) {
  HttpClient c = client();
  const int64_t quiz = create_quiz(c);
  const std::string a =
      answer_json({"e2e-" + std::to_string(quiz) + "-twice", quiz, 5, 2, 0, wall_ms(), 1000});
  const HttpResponse r = c.request("POST", "/v1/answers", batch_json({a, a}));
  ASSERT_EQ(r.status, 200) << show(r);
  auto d = parse(r);
  ASSERT_TRUE(!d.HasParseError() && d.IsObject() && d.HasMember("results") &&
              d["results"].IsArray() && d["results"].Size() == 2)
      << show(r);
  EXPECT_EQ(str_at(d["results"][0], "status"), "accepted") << show(r);
  EXPECT_EQ(str_at(d["results"][1], "status"), "duplicate") << show(r);
}

TEST_F(HttpE2E, MalformedJsonIs400) {
  HttpClient c = client();
  HttpResponse r = c.request("POST", "/v1/answers", "{\"event_id\": \"x\",");
  EXPECT_EQ(r.status, 400) << show(r);
  EXPECT_EQ(error_code(r), "malformed_json") << show(r);
  ASSERT_NE(r.header("content-type"), nullptr);
  EXPECT_NE(r.header("content-type")->find("application/json"), std::string::npos);

  r = c.request("POST", "/v1/answers", "[1,2,3]");
  EXPECT_EQ(r.status, 400) << "a JSON array is not an answer object: " << show(r);

  r = c.request("POST", "/v1/answers", R"({"answers":{"not":"an array"}})");
  EXPECT_EQ(r.status, 400) << show(r);
}

TEST_F(HttpE2E, BodyOverTheLimitIs413) {
  // The server runs with QUIZFLOW_HTTP_MAX_BODY=65536.
  {
    HttpClient c = client();
    const std::string body = R"({"event_id":")" + std::string(100 * 1024, 'x') + "\"}";
    const HttpResponse r = c.request("POST", "/v1/answers", body);
    EXPECT_EQ(r.status, 413) << "100 KB body: " << show(r);
  }
  {
    HttpClient c = client();
    const std::string body = R"({"event_id":")" + std::string(70 * 1024, 'x') + "\"}";
    const HttpResponse r = c.request("POST", "/v1/answers", body);
    EXPECT_EQ(r.status, 413) << "70 KB body: " << show(r);
    EXPECT_EQ(error_code(r), "too_large") << show(r);
  }
  HttpClient c = client();
  const HttpResponse r = c.request("GET", "/health");
  EXPECT_EQ(r.status, 200) << "still healthy after oversized bodies: " << show(r);
}

struct Standing {
  int64_t user_id = 0, score = 0, correct = 0, time_ms = 0;
};

TEST_F(HttpE2E, LeaderboardAndPlayerFollowTheScoringRules) {
  HttpClient c = client();
  const int64_t quiz = create_quiz(c);
  const int64_t now = wall_ms();
  int n = 0;
  auto ans = [&](int64_t user, int question, int option, int64_t elapsed, int64_t at_offset = 0) {
    return AnswerSpec{"e2e-" + std::to_string(quiz) + "-" + std::to_string(++n),
                      quiz,
                      user,
                      question,
                      option,
                      now + at_offset,
                      elapsed};
  };
  // q1: 4 options, correct 2, 1000 points, 20 s; q2: 3 options, correct 0, 500 points, 10 s;
  // q3: 2 options, correct 1, 1 point, 1 s. Chosen to exercise every tie-break.
  const AnswerSpec late_wrong = ans(8, 1, 0, 500);  // superseded by an earlier answered_at below
  const std::vector<AnswerSpec> batch = {
      ans(1, 1, 2, 0),
      ans(1, 2, 0, 10000),  // 1000 + 250
      ans(2, 1, 2, 40),
      ans(2, 3, 0, 0),  // 999 + 0: 999, one correct
      ans(3, 1, 2, 80),
      ans(3, 3, 1, 0),    // 998 + 1: 999, two correct -> above user 2
      ans(4, 1, 0, 100),  // 0, time 100
      ans(5, 1, 0, 200),  // 0, time 200
      ans(6, 1, 1, 100),  // 0, time 100: tie with user 4 -> by user_id
      ans(7, 2, 0, 3333),
      ans(7, 1, 2, 19999),          // 417 + 501
      ans(8, 1, 2, 1000, -10'000),  // earlier answered_at: this one counts
  };
  HttpResponse r = c.request("POST", "/v1/answers", answer_json(late_wrong));
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(int_at(parse(r), "accepted"), 1) << show(r);
  std::vector<std::string> items;
  for (const auto& a : batch) items.push_back(answer_json(a));
  r = c.request("POST", "/v1/answers", batch_json(items));
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(int_at(parse(r), "accepted"), static_cast<int64_t>(batch.size())) << show(r);

  // Expected standings by the rules of §4.
  std::map<std::pair<int64_t, int>, const AnswerSpec*> counted;
  std::vector<AnswerSpec> all = batch;
  all.push_back(late_wrong);
  for (const auto& a : all) {
    auto& slot = counted[{a.user_id, a.question_id}];
    if (slot == nullptr ||
        std::pair(a.answered_at_ms, a.event_id) < std::pair(slot->answered_at_ms, slot->event_id))
      slot = &a;
  }
  std::map<int64_t, Standing> by_user;
  for (const auto& [key, a] : counted) {
    const QuestionSpec& q = default_questions()[static_cast<size_t>(a->question_id - 1)];
    Standing& s = by_user[a->user_id];
    s.user_id = a->user_id;
    if (a->option_id == q.correct_option) {
      s.score += q.points - (q.points * a->elapsed_ms) / (2 * q.time_limit_ms);
      s.correct += 1;
    }
    s.time_ms += a->elapsed_ms;
  }
  std::vector<Standing> expected;
  for (const auto& [u, s] : by_user) expected.push_back(s);
  std::sort(expected.begin(), expected.end(), [](const Standing& a, const Standing& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.correct != b.correct) return a.correct > b.correct;
    if (a.time_ms != b.time_ms) return a.time_ms < b.time_ms;
    return a.user_id < b.user_id;
  });
  // The hand-computed order, as a check on the computation above.
  std::vector<int64_t> order;
  for (const auto& s : expected) order.push_back(s.user_id);
  ASSERT_EQ(order, (std::vector<int64_t>{1, 3, 2, 8, 7, 4, 6, 5}));

  const std::string base = "/v1/quizzes/" + std::to_string(quiz);
  r = c.request("GET", base + "/leaderboard?limit=100");
  ASSERT_EQ(r.status, 200) << show(r);
  auto d = parse(r);
  ASSERT_TRUE(!d.HasParseError() && d.IsObject() && d.HasMember("entries") &&
              d["entries"].IsArray())
      << show(r);
  EXPECT_EQ(int_at(d, "quiz_id"), quiz) << show(r);
  EXPECT_EQ(int_at(d, "total"), static_cast<int64_t>(expected.size())) << show(r);
  ASSERT_EQ(d["entries"].Size(), expected.size()) << show(r);
  for (size_t i = 0; i < expected.size(); ++i) {
    const auto& e = d["entries"][static_cast<rapidjson::SizeType>(i)];
    SCOPED_TRACE("leaderboard entry " + std::to_string(i));
    EXPECT_EQ(int_at(e, "rank"), static_cast<int64_t>(i + 1)) << show(r);
    EXPECT_EQ(int_at(e, "user_id"), expected[i].user_id) << show(r);
    EXPECT_EQ(int_at(e, "score"), expected[i].score) << show(r);
    EXPECT_EQ(int_at(e, "correct"), expected[i].correct) << show(r);
    EXPECT_EQ(int_at(e, "time_ms"), expected[i].time_ms) << show(r);
  }

  r = c.request("GET", base + "/leaderboard?limit=3&offset=2");
  ASSERT_EQ(r.status, 200) << show(r);
  d = parse(r);
  ASSERT_TRUE(!d.HasParseError() && d.IsObject() && d.HasMember("entries") &&
              d["entries"].IsArray() && d["entries"].Size() == 3)
      << show(r);
  for (rapidjson::SizeType i = 0; i < 3; ++i) {
    EXPECT_EQ(int_at(d["entries"][i], "rank"), static_cast<int64_t>(i) + 3) << show(r);
    EXPECT_EQ(int_at(d["entries"][i], "user_id"), expected[i + 2].user_id) << show(r);
  }

  for (size_t i = 0; i < expected.size(); ++i) {
    const Standing& s = expected[i];
    r = c.request("GET", base + "/players/" + std::to_string(s.user_id));
    ASSERT_EQ(r.status, 200) << show(r);
    d = parse(r);
    SCOPED_TRACE("player " + std::to_string(s.user_id));
    EXPECT_EQ(int_at(d, "quiz_id"), quiz) << show(r);
    EXPECT_EQ(int_at(d, "user_id"), s.user_id) << show(r);
    EXPECT_EQ(int_at(d, "rank"), static_cast<int64_t>(i + 1)) << show(r);
    EXPECT_EQ(int_at(d, "score"), s.score) << show(r);
    EXPECT_EQ(int_at(d, "correct"), s.correct) << show(r);
    EXPECT_EQ(int_at(d, "time_ms"), s.time_ms) << show(r);
  }

  r = c.request("GET", base + "/players/999");
  EXPECT_EQ(r.status, 404) << "a player without answers: " << show(r);
  const std::string unknown = "/v1/quizzes/" + std::to_string(next_quiz_id());
  r = c.request("GET", unknown + "/leaderboard");
  EXPECT_EQ(r.status, 404) << show(r);
  r = c.request("GET", unknown + "/players/1");
  EXPECT_EQ(r.status, 404) << show(r);
}

TEST_F(HttpE2E, ApiTokenGuardsWritesAndIsNeverLogged) {
  ServerProcess guarded(bin_, dir_, "token",
                        {{"QUIZFLOW_HTTP_ADDR", "127.0.0.1:0"}, {"QUIZFLOW_API_TOKEN", kToken}});
  const std::string err = guarded.start();
  ASSERT_TRUE(err.empty()) << err << "\n" << guarded.log();
  bool stopped = false;
  {
    HttpClient c = guarded.client();
    const HttpClient::Headers good = {{"Authorization", std::string("Bearer ") + kToken}};
    const HttpClient::Headers wrong = {{"Authorization", "Bearer wrong-token-456"}};
    const HttpClient::Headers prefix = {{"Authorization", "Bearer secret-token-12"}};
    const HttpClient::Headers bare = {{"Authorization", kToken}};

    const int64_t quiz = next_quiz_id();
    const int64_t now = wall_ms();
    const std::string qbody =
        quiz_json(quiz, "guarded", now - 60'000, now + 3'600'000, default_questions(), kRewards);
    HttpResponse r = c.request("POST", "/v1/quizzes", qbody);
    EXPECT_EQ(r.status, 401) << "quiz without a token: " << show(r);
    EXPECT_EQ(error_code(r), "unauthorized") << show(r);
    r = c.request("POST", "/v1/quizzes", qbody, good);
    EXPECT_EQ(r.status, 201) << show(r);

    const std::string eid = "e2e-" + std::to_string(quiz) + "-token";
    const std::string abody = answer_json({eid, quiz, 1, 1, 2, wall_ms(), 100});
    r = c.request("POST", "/v1/answers", abody);
    EXPECT_EQ(r.status, 401) << "answer without a token: " << show(r);
    EXPECT_EQ(error_code(r), "unauthorized") << show(r);
    r = c.request("POST", "/v1/answers", abody, wrong);
    EXPECT_EQ(r.status, 401) << "answer with a wrong token: " << show(r);
    r = c.request("POST", "/v1/answers", abody, prefix);
    EXPECT_EQ(r.status, 401) << "answer with a prefix of the token: " << show(r);
    r = c.request("POST", "/v1/answers", abody, bare);
    EXPECT_EQ(r.status, 401) << "token without 'Bearer ': " << show(r);
    r = c.request("POST", "/v1/answers", abody, good);
    EXPECT_EQ(r.status, 200) << show(r);
    EXPECT_EQ(int_at(parse(r), "accepted"), 1) << show(r);

    r = c.request("GET", "/v1/quizzes/" + std::to_string(quiz));
    EXPECT_EQ(r.status, 200) << "reads need no token: " << show(r);
    // …but the answers (correct_option) are shown only with it (spec §3).
    EXPECT_EQ(r.body.find("correct_option"), std::string::npos) << show(r);
    EXPECT_NE(r.body.find("option_count"), std::string::npos) << show(r);
    r = c.request("GET", "/v1/quizzes/" + std::to_string(quiz), "", wrong);
    EXPECT_EQ(r.body.find("correct_option"), std::string::npos) << show(r);
    r = c.request("GET", "/v1/quizzes/" + std::to_string(quiz), "", good);
    EXPECT_EQ(r.status, 200) << show(r);
    EXPECT_NE(r.body.find("correct_option"), std::string::npos) << show(r);

    std::string why;
    const auto code = guarded.terminate(20s, why);
    stopped = true;
    EXPECT_EQ(code, std::optional<int>(0)) << why;
  }
  ASSERT_TRUE(stopped);
  const std::string log = guarded.log();
  EXPECT_EQ(log.find(kToken), std::string::npos) << "the token appears in the server output";
  if (HasFailure()) print_log(guarded);
}

// Stops a server of its own (the shared one serves the other tests, in whatever order they run).
TEST_F(HttpE2E, SigtermDrainsAndExitsZeroWithin20s) {
  ServerProcess own(bin_, dir_, "sigterm", main_env());
  const std::string err = own.start();
  ASSERT_TRUE(err.empty()) << err << "\n" << own.log();
  // The server has just stored an answer; SIGTERM must drain and end with exit code 0.
  {
    HttpClient c = own.client();
    const int64_t quiz = create_quiz(c);
    const HttpResponse r = c.request(
        "POST", "/v1/answers",
        answer_json({"e2e-" + std::to_string(quiz) + "-last", quiz, 1, 1, 2, wall_ms(), 100}));
    EXPECT_EQ(r.status, 200) << show(r);
    EXPECT_EQ(int_at(parse(r), "accepted"), 1) << show(r);
  }
  std::string why;
  const auto t0 = std::chrono::steady_clock::now();
  const auto code = own.terminate(20s, why);
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  EXPECT_EQ(code, std::optional<int>(0)) << why;
  std::fprintf(stderr, "server exited %d ms after SIGTERM\n", static_cast<int>(took.count()));
  const std::string log = own.log();
  EXPECT_NE(log.find("quizflow stopped"), std::string::npos) << "no orderly shutdown in the log";
  if (HasFailure()) print_log(own);
}

}  // namespace
