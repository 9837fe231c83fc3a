// Scale-out through Kafka (issue 12, spec §3 Kafka, §5 invariants 1–3): built quizflow
// binaries in one consumer group share quiz.answers (6 partitions, keyed by quiz_id) on a
// librdkafka mock cluster hosted by a child process. Two engines consume, one is killed -9
// midway, a third joins; quizzes are created through one instance after the others started
// (they learn them from PostgreSQL). The final standings equal an independent computation of
// the workload — redelivered messages and re-sent answers included — and malformed or rejected
// messages are on the dead-letter topic.
#include <gtest/gtest.h>

#include <algorithm>
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
  const int64_t stored_offsets = scalar(
      db.url(),
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
  EXPECT_GT(int_at(d, "consumer.consumed"), 0) << st.body;
  if (HasFailure()) {
    print_log(b);
    print_log(c);
  }
}

}  // namespace
}  // namespace qf_e2e
