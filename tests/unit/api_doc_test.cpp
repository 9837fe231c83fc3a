// docs/api.md against the code (issue 14): every error code the engine can send (found in the
// sources: the HTTP handler's error calls, the request errors and rejections of the stages and
// the pipeline, the quiz decoder) and every code nginx answers in front is a row of the page's
// tables; every path segment and method the router matches appears in an endpoint heading;
// every notification type has an example; the dead-letter headers, health checks, item statuses
// and quiz states are named. A code, endpoint or notification added without documentation
// fails here.
#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/events.h"
#include "core/quiz.h"

namespace quizflow {
namespace {

std::string read(const std::string& relative) {
  std::ifstream in(std::string(QF_SOURCE_DIR) + "/" + relative);
  EXPECT_TRUE(in.good()) << "cannot read " << relative;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string doc() { return read("docs/api.md"); }

// The first capture group of every match of `re` in `text`.
std::vector<std::string> captures(const std::string& text, const std::string& re) {
  std::vector<std::string> out;
  const std::regex r(re);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), r); it != std::sregex_iterator();
       ++it)
    out.push_back((*it)[1]);
  return out;
}

// The code constants of core/events.h (kStorageUnavailable = "storage_unavailable", …).
std::map<std::string, std::string> code_constants() {
  std::map<std::string, std::string> out;
  const std::string h = read("core/events.h");
  const std::regex r(R"re(constexpr const char\* (k\w+) = "([a-z_]+)")re");
  for (auto it = std::sregex_iterator(h.begin(), h.end(), r); it != std::sregex_iterator(); ++it)
    out[(*it)[1]] = (*it)[2];
  return out;
}

// A code argument as written in the source: a string literal or a core/events.h constant.
const std::string kCodeArg = R"re(("[a-z_]+"|k[A-Za-z]+))re";

std::set<std::string> resolve(const std::vector<std::string>& args, const std::string& where) {
  static const auto constants = code_constants();
  std::set<std::string> out;
  for (const std::string& a : args) {
    if (a.front() == '"') {
      out.insert(a.substr(1, a.size() - 2));
    } else if (auto it = constants.find(a); it != constants.end()) {
      out.insert(it->second);
    } else {
      ADD_FAILURE() << where << ": code constant " << a << " is not one of core/events.h";
    }
  }
  return out;
}

// Request-level codes (the error body's `code`) the engine can send.
std::set<std::string> request_codes() {
  std::set<std::string> codes;
  const std::string http = read("ingress/http_server.cpp");
  // send_error(w, Http::Code::X, "code", …) and pending(std::move(w), "code", …)
  codes.merge(
      resolve(captures(http, R"re(send_error\(\s*\w+\s*,\s*Http::Code::\w+\s*,\s*)re" + kCodeArg),
              "http_server.cpp"));
  codes.merge(resolve(captures(http, R"re(pending\(\s*std::move\(w\)\s*,\s*)re" + kCodeArg),
                      "http_server.cpp"));
  // RequestError{status, "code", …}: ingest and the graph's recovery.
  for (const char* f : {"stages/ingest.cpp", "pipeline/graph.cpp"})
    codes.merge(resolve(captures(read(f), R"re(RequestError\{\s*\d+\s*,\s*)re" + kCodeArg), f));
  // The quiz decoder's codes, sent by POST /v1/quizzes.
  codes.merge(
      resolve(captures(read("core/quiz.cpp"), R"re(r\.code = )re" + kCodeArg), "core/quiz.cpp"));
  return codes;
}

// Per-item rejection codes (`results[].code`, dead letters).
std::set<std::string> rejection_codes() {
  std::set<std::string> codes;
  for (const char* f : {"stages/ingest.cpp", "stages/validate.cpp", "stages/verdict.cpp",
                        "pipeline/graph.cpp", "ingress/kafka_answers.cpp", "core/events.h"})
    codes.merge(resolve(captures(read(f), R"re(\breject\(\s*)re" + kCodeArg + R"re(\s*,)re"), f));
  return codes;
}

// The text of the section whose `## ` heading starts with `heading`, up to the next `## `.
std::string section(const std::string& text, const std::string& heading) {
  const size_t at = text.find("\n## " + heading);
  if (at == std::string::npos) return {};
  const size_t end = text.find("\n## ", at + 1);
  return text.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

// The first-column codes of the tables of a section: rows "| `code` | …".
std::set<std::string> table_codes(const std::string& sec) {
  const auto v = captures(sec, R"re(\n\| `([a-z_]+)` \|)re");
  return {v.begin(), v.end()};
}

std::vector<std::string> endpoint_headings() {
  return captures(doc(), R"re(\n### ((?:GET|POST|PUT|DELETE|PATCH) /[^\n]*))re");
}

TEST(ApiDoc, ScanFindsTheKnownCodes) {
  // Guards the scan itself: a refactoring that hides the codes from it must fail here, not pass
  // silently with nothing to check.
  const auto req = request_codes();
  for (const char* c : {"malformed_json", "invalid_request", "schema", "too_many_answers",
                        "unauthorized", "not_found", "method_not_allowed", "too_large", "conflict",
                        "overloaded", "outcome_unknown", "storage_unavailable", "internal_error"})
    EXPECT_TRUE(req.count(c)) << "request code not found in the sources: " << c;
  const auto rej = rejection_codes();
  for (const char* c :
       {"schema", "malformed_json", "unknown_quiz", "quiz_not_open", "quiz_finalized",
        "unknown_question", "option_out_of_range", "elapsed_out_of_range", "storage_rejected",
        "storage_unavailable", "internal_error"})
    EXPECT_TRUE(rej.count(c)) << "rejection code not found in the sources: " << c;
  EXPECT_GE(endpoint_headings().size(), 10u);
}

TEST(ApiDoc, EveryRequestErrorCodeIsInTheRequestErrorsTable) {
  const auto documented = table_codes(section(doc(), "Request errors"));
  ASSERT_FALSE(documented.empty()) << "no \"## Request errors\" table in docs/api.md";
  for (const std::string& c : request_codes())
    EXPECT_TRUE(documented.count(c))
        << "request error code `" << c << "` is sent by the engine but not in docs/api.md";
}

TEST(ApiDoc, EveryCodeNginxAnswersIsInTheRequestErrorsTable) {
  const auto documented = table_codes(section(doc(), "Request errors"));
  const auto nginx = captures(read("docker/nginx.conf"), R"re(\{"error":\{"code":"([a-z_]+)")re");
  EXPECT_GE(nginx.size(), 10u);
  for (const std::string& c : nginx)
    EXPECT_TRUE(documented.count(c)) << "nginx answers `" << c << "`, not in docs/api.md";
}

TEST(ApiDoc, EveryRejectionCodeIsInTheRejectionTable) {
  const auto documented = table_codes(section(doc(), "Answer rejection codes"));
  ASSERT_FALSE(documented.empty()) << "no \"## Answer rejection codes\" table in docs/api.md";
  for (const std::string& c : rejection_codes())
    EXPECT_TRUE(documented.count(c))
        << "rejection code `" << c << "` is sent by the engine but not in docs/api.md";
}

TEST(ApiDoc, EveryRoutedPathSegmentAndMethodHasAnEndpointHeading) {
  // route() in ingress/http_server.cpp matches path segments (`parts[i] == "…"`) and methods.
  const std::string http = read("ingress/http_server.cpp");
  const size_t from = http.find("void route(");
  ASSERT_NE(from, std::string::npos);
  const std::string router = http.substr(from, http.find("\n  }\n", from) - from);
  const auto segments = captures(router, R"re(parts\[\d\] == "([a-z_]+)")re");
  const auto methods = captures(router, R"re(Http::Method::(\w+))re");
  ASSERT_FALSE(segments.empty());
  std::string headings;
  for (const std::string& h : endpoint_headings()) headings += h + "\n";
  for (const std::string& s : segments)
    EXPECT_NE(headings.find("/" + s), std::string::npos)
        << "the router matches /" << s
        << " but no \"### METHOD /path\" heading of docs/api.md has it";
  for (std::string m : methods) {
    for (char& ch : m) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    EXPECT_NE(headings.find(m + " /"), std::string::npos)
        << "the router answers " << m << " but no endpoint heading of docs/api.md does";
  }
}

TEST(ApiDoc, EveryNotificationTypeHasAnExample) {
  const std::string d = doc();
  const auto types = captures(read("stages/notify.cpp"), R"re(Body\("([a-z_]+)")re");
  EXPECT_EQ(types.size(), 4u);
  for (const std::string& t : types)
    EXPECT_NE(d.find("\"type\":\"" + t + "\""), std::string::npos)
        << "notification type " << t << " has no example in docs/api.md";
}

TEST(ApiDoc, DeadLetterHeadersHealthChecksStatusesAndStatesAreNamed) {
  const std::string d = doc();
  const auto headers =
      captures(read("ingress/kafka_source.cpp"), R"re(RD_KAFKA_V_HEADER\("(\w+)")re");
  EXPECT_GE(headers.size(), 5u);
  for (const std::string& h : headers)
    EXPECT_NE(d.find("`" + h + "`"), std::string::npos) << "dead-letter header " << h;
  const std::string json_out = read("ingress/json_out.cpp");
  const size_t from = json_out.find("std::string health_body(");
  ASSERT_NE(from, std::string::npos);
  const std::string health = json_out.substr(from, json_out.find("\n}\n", from) - from);
  for (const std::string& k : captures(health, R"re(w\.Key\("(\w+)"\))re"))
    EXPECT_NE(d.find("\"" + k + "\""), std::string::npos) << "/health key " << k;
  for (ItemStatus s : {ItemStatus::accepted, ItemStatus::duplicate, ItemStatus::rejected})
    EXPECT_NE(d.find(std::string("`") + to_string(s) + "`"), std::string::npos)
        << "item status " << to_string(s);
  for (QuizState s : {QuizState::open, QuizState::closed, QuizState::finalized})
    EXPECT_NE(d.find(std::string("`") + to_string(s) + "`"), std::string::npos)
        << "quiz state " << to_string(s);
}

}  // namespace
}  // namespace quizflow
