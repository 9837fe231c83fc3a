// qf-kafka-feed: the Kafka-fed throughput bench's producer (scripts/bench --only kafka). Creates
// --quizzes open quizzes through one instance's HTTP API, then produces --answers answers
// (every one counts: a new (user, question) each; key = quiz_id) to --topic, acks=all,
// idempotent, and waits until all are acknowledged. Prints how long producing took.
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tools/api_json.h"
#include "tools/http_client.h"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: qf-kafka-feed --bootstrap HOST:PORT --topic T --http-port P "
               "--quizzes Q --answers N [--quiz-base ID]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string bootstrap, topic;
  int port = 0;
  int64_t quizzes = 60, answers = 300000, base = 1000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--bootstrap")
      bootstrap = v;
    else if (k == "--topic")
      topic = v;
    else if (k == "--http-port")
      port = std::atoi(v.c_str());
    else if (k == "--quizzes")
      quizzes = std::atoll(v.c_str());
    else if (k == "--answers")
      answers = std::atoll(v.c_str());
    else if (k == "--quiz-base")
      base = std::atoll(v.c_str());
    else
      return usage();
  }
  if (bootstrap.empty() || topic.empty() || port <= 0 || quizzes < 1 || answers < 1) return usage();
  using quizflow::tools::HttpClient;
  HttpClient http("127.0.0.1", static_cast<uint16_t>(port), std::chrono::seconds(30));
  const int64_t now = quizflow::tools::wall_ms();
  std::vector<quizflow::tools::QuestionSpec> questions;
  for (int k = 1; k <= 20; ++k) questions.push_back({k, 4, k % 4, 1000, 20000});
  for (int64_t q = 0; q < quizzes; ++q) {
    const auto r = http.request("POST", "/v1/quizzes",
                                quizflow::tools::quiz_json(base + q, "kafka bench", now - 60000,
                                                           now + 3600000, questions, {}));
    if (r.status != 201 && r.status != 200) {
      std::fprintf(stderr, "qf-kafka-feed: creating quiz %lld: HTTP %d %s\n",
                   static_cast<long long>(base + q), r.status, r.body.c_str());
      return 1;
    }
  }
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  for (const auto& [k, v] : {std::pair<const char*, std::string>{"bootstrap.servers", bootstrap},
                             {"enable.idempotence", "true"},
                             {"acks", "all"},
                             {"linger.ms", "5"},
                             {"queue.buffering.max.messages", "1000000"}})
    rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    std::fprintf(stderr, "qf-kafka-feed: %s\n", err);
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const std::string at = quizflow::tools::rfc3339(now - 1000);
  for (int64_t i = 0; i < answers; ++i) {
    const int64_t quiz = base + i % quizzes, n = i / quizzes;
    quizflow::tools::AnswerBody a{
        "kf-" + std::to_string(i), quiz, 1 + n / 20, 1 + n % 20, i % 4, at, i % 20000};
    const std::string value = quizflow::tools::answer_json(a), key = std::to_string(quiz);
    while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_KEY(key.data(), key.size()),
                             RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(rk, 10);
    rd_kafka_poll(rk, 0);
  }
  const bool flushed = rd_kafka_flush(rk, 120000) == RD_KAFKA_RESP_ERR_NO_ERROR;
  rd_kafka_destroy(rk);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("produced %lld answers in %.2f s\n", static_cast<long long>(answers), secs);
  return flushed ? 0 : 1;
}
