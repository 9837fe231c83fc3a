// Scale-out through Kafka (issue 12, spec §3 Kafka, §5 invariants 1–3): built quizflow
// binaries in one consumer group share quiz.answers (6 partitions, keyed by quiz_id) on a
// librdkafka mock cluster hosted by a child process. Two engines consume, one is killed -9
// midway, a third joins; quizzes are created through one instance after the others started
// (they learn them from PostgreSQL). The final standings equal an independent computation of
// the workload — redelivered messages and re-sent answers included — and malformed or rejected
// messages are on the dead-letter topic.
#include <gtest/gtest.h>

#include <algorithm>
#include <regex>
#include <set>
#include <sstream>

#include "e2e/server_fixture.h"
#include "integration/workload.h"
#include "support/kafka_reader.h"
#include "support/mock_kafka_process.h"
#include "unit/test_util.h"

namespace qf_e2e {
namespace {

using quizflow::testing::KafkaMessage;
using quizflow::testing::MockKafkaProcess;
using quizflow::testing::produce_all;
using quizflow::testing::read_topic;

int64_t scalar(const std::string& url, const std::string& sql, const std::string& dir) {
  const CommandResult r = psql(url, sql, dir);
  try {
    return r.exit_code == 0 ? std::stoll(r.out) : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

TEST(KafkaScaleOut, EnginesInOneGroupKilledAndJoiningGiveTheIndependentStandings) {
  std::string error;
  const std::string bin = quizflow_bin(error);
  ASSERT_TRUE(error.empty()) << error;
  const std::string admin_url = database_url(error);
  ASSERT_TRUE(error.empty()) << error;
  const std::string dir = make_temp_dir("quizflow-scaleout");
  ScratchDatabase db(admin_url, dir);
  ASSERT_TRUE(db.error().empty()) << db.error();
  MockKafkaProcess kafka(/*brokers=*/1, /*partitions=*/6);
  const Env env = isolated_env(db.url(), {{"KAFKA_BROKERS", kafka.bootstrap()},
                                          {"QUIZFLOW_CONSUME_ANSWERS", "true"},
                                          {"KAFKA_GROUP_ID", "scaleout-" + random_hex(8)},
                                          {"KAFKA_SESSION_TIMEOUT_MS", "6000"},
                                          {"BATCH_MAX_DELAY_MS", "2"}});
  // 30,000 distinct valid answers over 6 quizzes, 3,000 re-sent copies, 300 rejected ones.
  const auto w = quizflow::testing::make_workload(12012, 30000, 3000, 300, 100, 6);
  std::vector<std::pair<std::string, std::string>> messages;
  for (const auto& a : w.answers) messages.emplace_back(std::to_string(a.quiz_id), a.json);
  messages.emplace_back("101", "{not json");  // a malformed message: a dead letter too

  ServerProcess a(bin, dir, "scale-a", env), b(bin, dir, "scale-b", env);
  ASSERT_EQ(a.start(), "");
  ASSERT_EQ(b.start(), "");
  {
    HttpClient c("127.0.0.1", a.port(), std::chrono::seconds(10));
    for (const auto& q : w.quizzes) {
      const HttpResponse r = c.request("POST", "/v1/quizzes", quizflow::encode_quiz(q));
      ASSERT_EQ(r.status, 201) << show(r);
    }
  }
  const size_t half = messages.size() / 2;
  produce_all(
      kafka.bootstrap(), "quiz.answers",
      std::vector<std::pair<std::string, std::string>>(messages.begin(), messages.begin() + half));
  const auto stored = [&] { return scalar(db.url(), "SELECT count(*) FROM answer_events", dir); };
  ASSERT_TRUE(poll_until(std::chrono::seconds(60),
                         [&] { return stored() >= static_cast<int64_t>(w.distinct_valid / 4); }))
      << "nothing consumed: " << tail(a.log()) << tail(b.log());
  a.kill_now();  // mid-stream: its partitions go to the others after the session timeout
  ServerProcess c(bin, dir, "scale-c", env);
  ASSERT_EQ(c.start(), "");
  produce_all(
      kafka.bootstrap(), "quiz.answers",
      std::vector<std::pair<std::string, std::string>>(messages.begin() + half, messages.end()));
  const bool all = poll_until(std::chrono::seconds(120),
                              [&] { return stored() == static_cast<int64_t>(w.distinct_valid); });
  ASSERT_TRUE(all) << stored() << " of " << w.distinct_valid << " answers stored\n"
                   << tail(b.log()) << tail(c.log());

  // The standings equal the independent computation: nothing lost, nothing counted twice.
  std::ostringstream want;
  for (const auto& s : quizflow::testing::expected_standings(w))
    want << s.quiz_id << '|' << s.user_id << '|' << s.score << '|' << s.correct << '|' << s.time_ms
         << '\n';
  const bool equal = poll_until(std::chrono::seconds(30), [&] {
    const CommandResult r = psql(db.url(),
                                 "SELECT quiz_id, user_id, score, correct, time_ms FROM standings "
                                 "ORDER BY quiz_id, score DESC, correct DESC, time_ms, user_id",
                                 dir);
    return r.out == want.str();
  });
  EXPECT_TRUE(equal) << "the stored standings differ from the independent computation";
  EXPECT_EQ(scalar(db.url(), "SELECT count(*) FROM counted_answers", dir),
            scalar(db.url(),
                   "SELECT count(*) FROM (SELECT DISTINCT quiz_id, user_id, question_id "
                   "FROM answer_events) k",
                   dir));
  // The consumer's offsets were stored with the batches: per partition, at most what it holds
  // (a batch stores the offset below which everything was settled before it began).
  const int64_t stored_offsets =
      scalar(db.url(),
             "SELECT sum(top) FROM (SELECT max(next_offset) AS top FROM consumer_offsets "
             "GROUP BY partition) p",
             dir);
  EXPECT_LE(stored_offsets, static_cast<int64_t>(messages.size()));
  EXPECT_GT(stored_offsets, 0);
  // Rejected and malformed messages are dead letters (a redelivery may add copies).
  const std::vector<KafkaMessage> dead =
      read_topic(kafka.bootstrap(), "quiz.answers.dlq", static_cast<int64_t>(w.invalid) + 1);
  std::set<std::string> dead_values;
  for (const auto& m : dead) dead_values.insert(m.value);
  EXPECT_TRUE(dead_values.count("{not json")) << dead.size() << " dead letters";
  EXPECT_GE(dead.size(), w.invalid + 1);
  // The instance that did not create the quizzes learnt them from PostgreSQL.
  EXPECT_NE(b.log().find("learnt from PostgreSQL"), std::string::npos) << tail(b.log());
  // The consumer figures are in the stats.
  HttpClient hb("127.0.0.1", b.port(), std::chrono::seconds(10));
  const HttpResponse st = hb.request("GET", "/monitoring/stats");
  ASSERT_EQ(st.status, 200);
  const auto d = parse(st);
  EXPECT_TRUE(at_path(d, "consumer.paused") != nullptr) << st.body;
  const rapidjson::Value* lag = at_path(d, "consumer.lag");
  ASSERT_TRUE(lag != nullptr && lag->IsObject() && lag->MemberCount() > 0) << st.body;
  for (auto m = lag->MemberBegin(); m != lag->MemberEnd(); ++m)
    EXPECT_TRUE(m->value.IsInt64()) << "consumer.lag." << m->name.GetString() << ": " << st.body;
  EXPECT_GT(int_at(d, "consumer.consumed"), 0) << st.body;
  if (HasFailure()) {
    print_log(b);
    print_log(c);
  }
}

// The standings table as "quiz|user|score|correct|time_ms" lines, and what the workload must
// give.
std::string stored_standings(const std::string& url, const std::string& dir) {
  return psql(url,
              "SELECT quiz_id, user_id, score, correct, time_ms FROM standings "
              "ORDER BY quiz_id, score DESC, correct DESC, time_ms, user_id",
              dir)
      .out;
}
std::string expected_text(const quizflow::testing::Workload& w) {
  std::ostringstream want;
  for (const auto& s : quizflow::testing::expected_standings(w))
    want << s.quiz_id << '|' << s.user_id << '|' << s.score << '|' << s.correct << '|' << s.time_ms
         << '\n';
  return want.str();
}

// Killed after its batches committed in PostgreSQL and before any offset reached Kafka (the
// Kafka commit is held back for ten minutes): the next instance starts from the offsets the
// batches stored, and what it consumes again is a duplicate, never counted twice.
TEST(KafkaScaleOut, KilledBetweenItsPostgresCommitAndItsKafkaCommitResumesWithoutDoubleApplying) {
  std::string error;
  const std::string bin = quizflow_bin(error);
  ASSERT_TRUE(error.empty()) << error;
  const std::string admin_url = database_url(error);
  ASSERT_TRUE(error.empty()) << error;
  const std::string dir = make_temp_dir("quizflow-kafka-kill");
  ScratchDatabase db(admin_url, dir);
  ASSERT_TRUE(db.error().empty()) << db.error();
  MockKafkaProcess kafka(/*brokers=*/1, /*partitions=*/3);
  const Env base = isolated_env(db.url(), {{"KAFKA_BROKERS", kafka.bootstrap()},
                                           {"QUIZFLOW_CONSUME_ANSWERS", "true"},
                                           {"KAFKA_GROUP_ID", "kill-" + random_hex(8)},
                                           {"KAFKA_SESSION_TIMEOUT_MS", "6000"},
                                           {"BATCH_MAX_DELAY_MS", "2"}});
  const auto w = quizflow::testing::make_workload(4711, 12000, 500, 0, 300, 3);
  std::vector<std::pair<std::string, std::string>> messages;
  for (const auto& a : w.answers) messages.emplace_back(std::to_string(a.quiz_id), a.json);
  {
    ServerProcess first(bin, dir, "kill-first",
                        merge_env(base, {{"KAFKA_COMMIT_INTERVAL_MS", "600000"}}));
    ASSERT_EQ(first.start(), "");
    HttpClient c("127.0.0.1", first.port(), std::chrono::seconds(10));
    for (const auto& q : w.quizzes) {
      const HttpResponse r = c.request("POST", "/v1/quizzes", quizflow::encode_quiz(q));
      ASSERT_EQ(r.status, 201) << show(r);
    }
    // A third of the messages, in two steps so that batches after the first step's ones store
    // its settled offsets (a batch stores those settled before it, not its own), then the kill:
    // nothing reached Kafka's offsets.
    const size_t sixth = messages.size() / 6;
    produce_all(kafka.bootstrap(), "quiz.answers",
                std::vector<std::pair<std::string, std::string>>(messages.begin(),
                                                                 messages.begin() + sixth));
    ASSERT_TRUE(poll_until(std::chrono::seconds(60), [&] {
      return scalar(db.url(), "SELECT count(*) FROM answer_events", dir) >=
             static_cast<int64_t>(w.distinct_valid / 8);
    })) << tail(first.log());
    produce_all(kafka.bootstrap(), "quiz.answers",
                std::vector<std::pair<std::string, std::string>>(
                    messages.begin() + sixth, messages.begin() + messages.size() / 3));
    ASSERT_TRUE(poll_until(std::chrono::seconds(60), [&] {
      return scalar(db.url(), "SELECT count(*) FROM answer_events", dir) >=
                 static_cast<int64_t>(w.distinct_valid / 4) &&
             scalar(db.url(), "SELECT coalesce(max(next_offset), 0) FROM consumer_offsets", dir) >
                 0;
    })) << tail(first.log());
    first.kill_now();
  }
  produce_all(kafka.bootstrap(), "quiz.answers",
              std::vector<std::pair<std::string, std::string>>(
                  messages.begin() + messages.size() / 3, messages.end()));
  const int64_t offsets_stored =
      scalar(db.url(), "SELECT coalesce(max(next_offset), 0) FROM consumer_offsets", dir);
  ServerProcess second(bin, dir, "kill-second", base);
  ASSERT_EQ(second.start(), "");
  // Its partitions come once the killed member's session has timed out.
  ASSERT_TRUE(poll_until(std::chrono::seconds(30), [&] {
    return second.log().find("assigned") != std::string::npos;
  })) << tail(second.log());
  const bool all = poll_until(std::chrono::seconds(90), [&] {
    return scalar(db.url(), "SELECT count(*) FROM answer_events", dir) ==
           static_cast<int64_t>(w.distinct_valid);
  });
  ASSERT_TRUE(all) << tail(second.log());
  const bool equal = poll_until(std::chrono::seconds(30), [&] {
    return stored_standings(db.url(), dir) == expected_text(w);
  });
  EXPECT_TRUE(equal) << "answers were lost or counted twice";
  // It resumed from the offsets PostgreSQL held, not from the beginning.
  EXPECT_GT(offsets_stored, 0);
  // (Kafka held no offset of this group: a partition starting past 0 started where PostgreSQL
  // said; one that never had a message starts at "committed".)
  EXPECT_TRUE(std::regex_search(second.log(), std::regex(R"(assigned .*[0-9]+@[1-9][0-9]*)")))
      << "no partition resumed from the offsets stored with the batches:\n"
      << tail(second.log());
  if (HasFailure()) print_log(second);
}

// Backpressure: with a small in-flight limit the consumer pauses its partitions while the
// engine holds many answers and resumes them as the backlog drains; nothing is lost.
TEST(KafkaScaleOut, PausedPartitionsResumeWhenTheBacklogDrains) {
  std::string error;
  const std::string bin = quizflow_bin(error);
  ASSERT_TRUE(error.empty()) << error;
  const std::string admin_url = database_url(error);
  ASSERT_TRUE(error.empty()) << error;
  const std::string dir = make_temp_dir("quizflow-kafka-pause");
  ScratchDatabase db(admin_url, dir);
  ASSERT_TRUE(db.error().empty()) << db.error();
  MockKafkaProcess kafka(/*brokers=*/1, /*partitions=*/3);
  const Env env = isolated_env(db.url(), {{"KAFKA_BROKERS", kafka.bootstrap()},
                                          {"QUIZFLOW_CONSUME_ANSWERS", "true"},
                                          {"KAFKA_GROUP_ID", "pause-" + random_hex(8)},
                                          {"KAFKA_SESSION_TIMEOUT_MS", "6000"},
                                          {"QUIZFLOW_MAX_IN_FLIGHT", "400"},
                                          {"QUIZFLOW_HTTP_MAX_BATCH", "100"},
                                          {"BATCH_MAX_DELAY_MS", "5"}});
  const auto w = quizflow::testing::make_workload(99, 8000, 0, 0, 500, 3);
  std::vector<std::pair<std::string, std::string>> messages;
  for (const auto& a : w.answers) messages.emplace_back(std::to_string(a.quiz_id), a.json);
  ServerProcess s(bin, dir, "pause", env);
  ASSERT_EQ(s.start(), "");
  HttpClient c("127.0.0.1", s.port(), std::chrono::seconds(10));
  for (const auto& q : w.quizzes) {
    const HttpResponse r = c.request("POST", "/v1/quizzes", quizflow::encode_quiz(q));
    ASSERT_EQ(r.status, 201) << show(r);
  }
  produce_all(kafka.bootstrap(), "quiz.answers", messages);
  const bool all = poll_until(std::chrono::seconds(90), [&] {
    return scalar(db.url(), "SELECT count(*) FROM answer_events", dir) ==
           static_cast<int64_t>(w.distinct_valid);
  });
  ASSERT_TRUE(all) << tail(s.log());
  EXPECT_NE(s.log().find("partitions paused"), std::string::npos) << tail(s.log());
  EXPECT_NE(s.log().find("partitions resumed"), std::string::npos) << tail(s.log());
  EXPECT_TRUE(poll_until(std::chrono::seconds(30),
                         [&] { return stored_standings(db.url(), dir) == expected_text(w); }));
  const HttpResponse st = c.request("GET", "/monitoring/stats");
  ASSERT_EQ(st.status, 200);
  EXPECT_EQ(int_at(parse(st), "consumer.paused"), 0) << st.body;
  EXPECT_EQ(int_at(parse(st), "consumer.in_engine"), 0) << st.body;
  if (HasFailure()) print_log(s);
}

// QUIZFLOW_INGRESS_MODE=kafka: POST /v1/answers is answered once Kafka acknowledged the
// answers (schema errors at once, nothing produced for them); with the brokers down it is a
// 503 after the produce timed out, never a 200; the answers are then scored by the consumer.
TEST(KafkaScaleOut, HttpInKafkaModeAnswersOnlyOnceKafkaAcknowledged) {
  std::string error;
  const std::string bin = quizflow_bin(error);
  ASSERT_TRUE(error.empty()) << error;
  const std::string admin_url = database_url(error);
  ASSERT_TRUE(error.empty()) << error;
  const std::string dir = make_temp_dir("quizflow-kafka-mode");
  ScratchDatabase db(admin_url, dir);
  ASSERT_TRUE(db.error().empty()) << db.error();
  MockKafkaProcess kafka(/*brokers=*/1, /*partitions=*/3);
  const Env env = isolated_env(db.url(), {{"KAFKA_BROKERS", kafka.bootstrap()},
                                          {"QUIZFLOW_INGRESS_MODE", "kafka"},
                                          {"QUIZFLOW_CONSUME_ANSWERS", "true"},
                                          {"KAFKA_GROUP_ID", "mode-" + random_hex(8)},
                                          {"KAFKA_SESSION_TIMEOUT_MS", "6000"},
                                          {"QUIZFLOW_HTTP_HEADER_TIMEOUT_MS", "4000"},
                                          {"QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS", "2000"}});
  ServerProcess s(bin, dir, "kafka-mode", env);
  ASSERT_EQ(s.start(), "");
  HttpClient c("127.0.0.1", s.port(), std::chrono::seconds(20));
  const int64_t quiz = next_quiz_id();
  ASSERT_EQ(c.request("POST", "/v1/quizzes", open_quiz_json(quiz)).status, 201);
  const int64_t now = wall_ms() - 1000;
  std::vector<std::string> items;
  for (int u = 1; u <= 3; ++u)
    items.push_back(answer_json({"km-" + std::to_string(u), quiz, u, 1, 2, now, 100}));
  items.push_back(R"({"event_id":"km-bad","quiz_id":"x"})");
  HttpResponse r = c.request("POST", "/v1/answers", batch_json(items));
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(int_at(parse(r), "accepted"), 3) << show(r);
  EXPECT_EQ(int_at(parse(r), "rejected"), 1) << show(r);
  // Acknowledged means on the topic.
  std::set<std::string> ids;
  for (const KafkaMessage& m : read_topic(kafka.bootstrap(), "quiz.answers", 3, 1000))
    ids.insert(quizflow::testing::json_string_field(m.value, "event_id"));
  EXPECT_EQ(ids, (std::set<std::string>{"km-1", "km-2", "km-3"}));
  // Scored asynchronously by the consumer.
  auto players = [&] {
    const HttpResponse lb =
        c.request("GET", "/v1/quizzes/" + std::to_string(quiz) + "/leaderboard");
    return lb.status == 200 ? int_at(parse(lb), "total") : -1;
  };
  EXPECT_TRUE(poll_until(std::chrono::seconds(30), [&] { return players() == 3; }));

  // Brokers down: no acknowledgement, so no 200.
  kafka.brokers_down();
  const std::string late = answer_json({"km-4", quiz, 4, 1, 2, now, 100});
  const auto t0 = std::chrono::steady_clock::now();
  r = c.request("POST", "/v1/answers", late);
  EXPECT_EQ(r.status, 503) << show(r);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1500))
      << "answered before Kafka could have acknowledged";
  EXPECT_NE(r.body.find("storage_unavailable"), std::string::npos) << show(r);
  EXPECT_NE(r.header("retry-after"), nullptr) << show(r);
  kafka.brokers_up();
  // The resend goes through once Kafka is back, and counts once.
  EXPECT_TRUE(poll_until(std::chrono::seconds(30),
                         [&] { return c.request("POST", "/v1/answers", late).status == 200; }));
  EXPECT_TRUE(poll_until(std::chrono::seconds(30), [&] { return players() == 4; }));
  EXPECT_EQ(scalar(db.url(), "SELECT count(*) FROM answer_events", dir), 4);
  if (HasFailure()) print_log(s);
}

}  // namespace
}  // namespace qf_e2e
