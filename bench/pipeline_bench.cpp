// Pipeline benchmark: answers fed straight into the flow graph (Engine::submit, no HTTP) and
// through PostgreSQL (durable commits, synchronous_commit on) and the Kafka producer (mock
// cluster). Few large quizzes vs many small ones; each with the transactional outbox (the
// default: notifications written in the batch transaction, relayed after delivery) and without
// it (QUIZFLOW_OUTBOX=false: produced from memory after COMMIT), alternating in one invocation.
// Each case runs on a database of its own, created from --url (or DATABASE_URL) and dropped
// after; with --use-db, every case runs on that existing database instead (migrated if need be,
// never dropped), its quizzes numbered above the largest quiz id there (a database holding
// history, say: scripts/bench --only history); a case then also carries the earlier cases'
// quizzes, still open, in the engine and the tables.
//
//   qf-pipeline-bench [--url URL | --use-db URL] [--answers N] [--request K] [--many Q]
//                     [--delay-ms D] [--smoke]
//
// Prints RESULT lines (see bench/CMakeLists.txt) and a summary on stderr.
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/time_util.h"
#include "egress/kafka_producer.h"
#include "egress/pg_store.h"
#include "pipeline/engine.h"

namespace {

using namespace quizflow;
using Clock = std::chrono::steady_clock;

std::string with_db(const std::string& url, const std::string& db) {
  const auto q = url.find('?');
  const std::string base = url.substr(0, q);
  std::string out = base.substr(0, base.rfind('/') + 1) + db;
  if (q != std::string::npos) out += url.substr(q);
  return out;
}

struct Case {
  std::string name;
  int quizzes;
};

struct Outcome {
  double answers_per_s = 0;
  int64_t accepted = 0, batches = 0;
};

// admin_url: where the case's own database is created and dropped; with use_db non-empty, the
// case runs on that database, which it neither creates nor drops.
Outcome run_case(const std::string& admin_url, const std::string& use_db, const Case& c,
                 size_t answers, size_t per_request, uint32_t seed, int delay_ms, bool outbox) {
  const std::string db =
      use_db.empty() ? "qf_bench_pipe_" + std::to_string(std::random_device{}()) : "";
  if (use_db.empty()) {
    pqxx::connection conn(admin_url);
    pqxx::nontransaction tx(conn);
    tx.exec("CREATE DATABASE " + db);
  }
  Outcome out;
  {
    Config cfg;
    cfg.database_url = use_db.empty() ? with_db(admin_url, db) : use_db;
    cfg.batch_max_size = 5000;
    cfg.batch_max_delay_ms = delay_ms;
    cfg.db_writers = 2;
    cfg.max_in_flight_events = 200000;
    cfg.notify_queue_max = 2000000;
    cfg.outbox = outbox;
    auto producer = std::make_unique<egress::KafkaProducer>(egress::kafka_options(cfg));
    Engine engine(cfg, std::make_unique<egress::PgStore>(egress::pool_options(cfg)),
                  std::move(producer));
    if (auto st = engine.start(); !st.ok()) throw std::runtime_error(st.to_string());
    // The case's quizzes: ids first_quiz .. first_quiz + quizzes - 1, above any already there
    // (engine.start() has migrated the database).
    int64_t first_quiz = 1;
    if (!use_db.empty()) {
      pqxx::connection conn(use_db);
      pqxx::nontransaction tx(conn);
      first_quiz = tx.exec("SELECT coalesce(max(quiz_id), 0) + 1 FROM quizzes")[0][0].as<int64_t>();
    }

    const int64_t opens = *parse_rfc3339_ms("2026-01-01T00:00:00Z");
    const int64_t closes = *parse_rfc3339_ms("2027-01-01T00:00:00Z");
    {  // quizzes, created from 4 threads
      std::atomic<int> next{1};
      std::vector<std::thread> ts;
      for (int t = 0; t < 4; ++t)
        ts.emplace_back([&] {
          for (int q; (q = next.fetch_add(1)) <= c.quizzes;) {
            QuizDef d;
            d.quiz_id = first_quiz + q - 1;
            d.title = "bench " + std::to_string(d.quiz_id);
            d.opens_at_ms = opens;
            d.closes_at_ms = closes;
            for (int k = 1; k <= 20; ++k) d.questions.push_back(Question{k, 4, k % 4, 1000, 20000});
            if (auto r = engine.create_quiz(d); !r.ok())
              throw std::runtime_error(r.status().to_string());
          }
        });
      for (auto& t : ts) t.join();
    }
    // Bodies prepared before timing: each answer a distinct (quiz, user, question).
    std::mt19937 rng(seed);
    std::vector<std::string> bodies;
    std::string body;
    size_t in_body = 0;
    const size_t users_per_quiz =
        std::max<size_t>(1, answers / 20 / static_cast<size_t>(c.quizzes) + 1);
    for (size_t i = 0; i < answers; ++i) {
      const int64_t quiz = first_quiz + static_cast<int64_t>(i % static_cast<size_t>(c.quizzes));
      const size_t k = i / static_cast<size_t>(c.quizzes);
      const int64_t user = 1 + static_cast<int64_t>(k / 20 % users_per_quiz);
      const int question = 1 + static_cast<int>(k % 20);
      if (in_body == 0)
        body = "{\"answers\":[";
      else
        body += ',';
      body += "{\"event_id\":\"b" + std::to_string(i) + "\",\"quiz_id\":" + std::to_string(quiz) +
              ",\"user_id\":" + std::to_string(user) +
              ",\"question_id\":" + std::to_string(question) +
              ",\"option_id\":" + std::to_string(rng() % 4) + ",\"answered_at\":\"" +
              format_rfc3339_ms(opens + 1000 + static_cast<int64_t>(i)) +
              "\",\"elapsed_ms\":" + std::to_string(rng() % 20000) + "}";
      if (++in_body == per_request || i + 1 == answers) {
        body += "]}";
        bodies.push_back(std::move(body));
        in_body = 0;
      }
    }
    std::atomic<int64_t> accepted{0}, outstanding{0};
    const auto t0 = Clock::now();
    for (auto& b : bodies) {
      outstanding.fetch_add(1);
      for (;;) {
        const auto res = engine.submit(b, [&](Request& r) {
          int64_t n = 0;
          for (const auto& it : r.items) n += it.verdict.status == ItemStatus::accepted;
          accepted.fetch_add(n);
          outstanding.fetch_sub(1);
        });
        if (res == SubmitResult::admitted) break;
        std::this_thread::sleep_for(std::chrono::microseconds(200));  // full: wait (backpressure)
      }
    }
    while (outstanding.load() > 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    out.accepted = accepted.load();
    out.answers_per_s = static_cast<double>(out.accepted) / secs;
    out.batches = engine.metrics().batches.committed.load();
    engine.stop();
    if (out.accepted != static_cast<int64_t>(answers)) {
      std::fprintf(stderr, "pipeline bench: %lld of %zu answers accepted\n",
                   static_cast<long long>(out.accepted), answers);
      std::exit(1);
    }
  }
  if (use_db.empty()) {
    pqxx::connection conn(admin_url);
    pqxx::nontransaction tx(conn);
    tx.exec("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url = std::getenv("DATABASE_URL") ? std::getenv("DATABASE_URL") : "";
  std::string use_db;
  size_t answers = 400000, per_request = 1000;
  int many = 5000;
  int delay_ms = Config{}.batch_max_delay_ms;  // the default unless --delay-ms
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--url")
      url = next();
    else if (a == "--use-db")
      use_db = next();
    else if (a == "--answers")
      answers = std::stoul(next());
    else if (a == "--request")
      per_request = std::stoul(next());
    else if (a == "--many")
      many = std::stoi(next());
    else if (a == "--delay-ms")
      delay_ms = std::stoi(next());
    else if (a == "--smoke") {
      answers = 20000;
      many = 200;
    } else {
      std::fprintf(stderr,
                   "usage: qf-pipeline-bench [--url URL | --use-db URL] [--answers N] "
                   "[--request K] [--many Q] [--delay-ms D] [--smoke]\n");
      return 2;
    }
  }
  if (url.empty() && use_db.empty()) {
    std::fprintf(stderr, "qf-pipeline-bench: DATABASE_URL, --url or --use-db is required\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  const std::vector<Case> cases = {{"few_large_quizzes", 10}, {"many_small_quizzes", many}};
  std::vector<Outcome> outs;
  for (size_t i = 0; i < cases.size(); ++i) {
    Outcome with_outbox;
    for (const bool outbox : {true, false}) {
      const std::string name = cases[i].name + (outbox ? "" : "_no_outbox");
      const Outcome o = run_case(url, use_db, cases[i], answers, per_request,
                                 42 + static_cast<uint32_t>(i), delay_ms, outbox);
      if (outbox) {
        outs.push_back(o);
        with_outbox = o;
      }
      std::printf("RESULT bench=pipeline case=%s metric=answers_per_s value=%.0f unit=answers/s\n",
                  name.c_str(), o.answers_per_s);
      std::printf(
          "RESULT bench=pipeline case=%s metric=answers_per_transaction value=%.1f unit=answers\n",
          name.c_str(),
          static_cast<double>(o.accepted) / static_cast<double>(std::max<int64_t>(1, o.batches)));
      std::fprintf(stderr, "%-30s %6d quizzes  %10.0f answers/s  %lld batch transactions\n",
                   name.c_str(), cases[i].quizzes, o.answers_per_s,
                   static_cast<long long>(o.batches));
      if (!outbox)
        std::printf(
            "RESULT bench=pipeline case=%s metric=outbox_cost value=%.1f unit=%%_of_throughput\n",
            cases[i].name.c_str(), 100.0 * (1.0 - with_outbox.answers_per_s / o.answers_per_s));
      std::fflush(stdout);
    }
  }
  std::printf(
      "RESULT bench=pipeline case=ratio_many_over_few metric=time_per_answer value=%.2f "
      "unit=x\n",
      outs[0].answers_per_s / outs[1].answers_per_s);
  return 0;
}
