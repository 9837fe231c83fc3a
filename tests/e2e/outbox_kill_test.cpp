// kill -9 between a commit and the relay of its notifications (spec §5 invariant 1 for
// notifications, issue 9): the built quizflow binary (QUIZFLOW_BIN) produces to a Kafka cluster
// that outlives it (a librdkafka mock cluster in a child process, qf-mock-kafka); it is killed
// right after its answers were acknowledged, three times (once with every broker down, so that
// nothing of that round can have been delivered), and restarted. Afterwards every expected
// answer_result notification_id is on the topic, read back with a real librdkafka consumer;
// a notification_id seen twice has the same content.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "e2e/server_fixture.h"
#include "support/kafka_reader.h"
#include "support/mock_kafka_process.h"
#include "unit/test_util.h"

namespace qf_e2e {
namespace {

using quizflow::testing::json_string_field;
using quizflow::testing::KafkaMessage;
using quizflow::testing::MockKafkaProcess;
using quizflow::testing::read_topic;

TEST(OutboxKill, EveryNotificationOfAcknowledgedAnswersSurvivesKillDashNine) {
  std::string error;
  const std::string bin = quizflow_bin(error);
  ASSERT_TRUE(error.empty()) << error;
  const std::string admin_url = database_url(error);
  ASSERT_TRUE(error.empty()) << error;
  const std::string dir = make_temp_dir("quizflow-outbox-kill");
  ScratchDatabase db(admin_url, dir);
  ASSERT_TRUE(db.error().empty()) << db.error();
  MockKafkaProcess kafka;
  const Env env = isolated_env(db.url(), {{"KAFKA_BROKERS", kafka.bootstrap()},
                                          {"OUTBOX_RELAY_AFTER_MS", "300"},
                                          {"BATCH_MAX_DELAY_MS", "2"}});
  const int64_t quiz = next_quiz_id();
  std::set<std::string> want;  // answer_result ids of every acknowledged (counted) answer
  for (int round = 0; round < 3; ++round) {
    ServerProcess s(bin, dir, quizflow::test::cat("kill-", round), env);
    ASSERT_EQ(s.start(/*require_healthy=*/false), "");
    HttpClient c("127.0.0.1", s.port(), std::chrono::seconds(10));
    if (round == 0) {
      const HttpResponse r = c.request("POST", "/v1/quizzes", open_quiz_json(quiz));
      ASSERT_EQ(r.status, 201) << show(r);
    }
    if (round == 1) kafka.brokers_down();
    // 160 answers: 4 requests of 40, each (user, question) once, so each counts.
    for (int req = 0; req < 4; ++req) {
      std::vector<std::string> items;
      for (int k = 0; k < 40; ++k) {
        const int64_t user = 1 + round * 1000 + req * 40 + k;
        const std::string id = quizflow::test::cat("k", round, "-", req, "-", k);
        items.push_back(answer_json({id, quiz, user, 1, 2, wall_ms() - 1000, 100}));
        want.insert(quizflow::test::cat("answer_result:", quiz, ":", user, ":", id));
      }
      const HttpResponse r = c.request("POST", "/v1/answers", batch_json(items));
      ASSERT_EQ(r.status, 200) << show(r);
      ASSERT_EQ(int_at(parse(r), "accepted"), 40) << show(r);
    }
    s.kill_now();  // SIGKILL right after the last acknowledgement
    if (round == 1) kafka.brokers_up();
  }
  ASSERT_EQ(want.size(), 480u);
  // A last run relays what the killed ones left in the outbox.
  ServerProcess last(bin, dir, "kill-last", env);
  ASSERT_EQ(last.start(), "");
  const bool drained = poll_until(std::chrono::seconds(30), [&] {
    const CommandResult r = psql(db.url(), "SELECT count(*) FROM outbox", dir);
    std::string n = r.out;
    n.erase(std::remove_if(n.begin(), n.end(), [](char ch) { return std::isspace(ch); }), n.end());
    return r.exit_code == 0 && n == "0";
  });
  EXPECT_TRUE(drained) << "the outbox still holds rows 30 s after the restart";
  const std::vector<KafkaMessage> msgs =
      read_topic(kafka.bootstrap(), "quiz.notifications", static_cast<int64_t>(want.size()));
  std::map<std::string, std::string> seen;
  size_t duplicates = 0;
  for (const KafkaMessage& m : msgs) {
    const std::string id = json_string_field(m.value, "notification_id");
    ASSERT_FALSE(id.empty()) << m.value;
    auto [it, fresh] = seen.emplace(id, m.value);
    if (!fresh) {
      ++duplicates;
      EXPECT_EQ(it->second, m.value) << "duplicate with other content: " << id;
    }
  }
  size_t lost = 0;
  for (const auto& id : want) lost += seen.count(id) ? 0 : 1;
  EXPECT_EQ(lost, 0u) << "of " << want.size() << " answer_result notifications";
  std::printf("kill -9 x3: %zu expected answer_result, %zu lost, %zu duplicates on the topic\n",
              want.size(), lost, duplicates);
  if (HasFailure()) print_log(last);
}

}  // namespace
}  // namespace qf_e2e
