// End-to-end graceful shutdown under load (app/main.cpp, spec §5.1): the built quizflow binary
// (QUIZFLOW_BIN) against DATABASE_URL, with 16 keep-alive connections posting batches of answers
// continuously while the server gets SIGTERM.
//
// What a client may see: every request it finished sending gets an HTTP response (200, or 503
// once the server refuses new work), or — only once the server has closed its listener — a
// connection error (refused, reset, or EOF before any response byte). No request may hang until
// the client timeout. The process exits 0 within QUIZFLOW_DRAIN_TIMEOUT_MS + a margin, and every
// answer acknowledged `accepted` is in PostgreSQL. A second signal during the drain ends the
// process at once (non-zero allowed), and what was acknowledged is still stored.
//
// Requests go through RawConn (load_helpers.h), which never resends: a request the server drops
// shows up as a connection error instead of being masked by a retry on a new connection.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "e2e/load_helpers.h"

namespace {

using namespace quizflow::loadtest;

constexpr int kThreads = 16;
constexpr auto kClientTimeout = 15s;
constexpr auto kLoadBeforeSignal = 2s;
// The default. One run of the whole suite saw a batch transaction stay in flight for over 10 s
// under this load (cause not found; not reproduced in 5 runs of this test alone): the drain
// waits for it by design, so the limit leaves room for such a stall instead of failing on it.
constexpr int kDrainTimeoutMs = 20000;
constexpr auto kExitMargin = 5s;
// A connection error is acceptable when it ended no earlier than this before the listener was
// seen closed (the probe connects every millisecond; scheduling on a busy 2-core machine).
constexpr auto kCloseTolerance = 50ms;
// A request sent this long before SIGTERM was admitted before the server began refusing work:
// it must get a response, never a connection error.
constexpr auto kAdmittedBeforeSignal = 200ms;

// One request as a client saw it.
struct Rec {
  Outcome outcome = Outcome::protocol_error;
  int status = 0;
  bool retry_after = false;
  bool new_connection = false;
  Clock::time_point started{}, sent{}, ended{};
  std::string error;       // for non-responses and unexpected bodies
  std::string error_code;  // the error.code of a 503 body
  size_t accepted = 0;
};

struct ThreadLog {
  std::vector<Rec> recs;
  std::vector<std::string> accepted;  // event ids acknowledged accepted
};

std::string json_error_code(const std::string& body) {
  rapidjson::Document d;
  d.Parse(body.c_str(), body.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("error") || !d["error"].IsObject() ||
      !d["error"].HasMember("code") || !d["error"]["code"].IsString())
    return {};
  return d["error"]["code"].GetString();
}

// Posts batches until `stop`, or until the server is gone (a refused connection).
void run_client(uint16_t port, int64_t quiz_id, const std::string& prefix, int batch,
                const std::atomic<bool>& stop, ThreadLog& log) {
  RawConn conn(port, kClientTimeout);
  std::string body;
  std::vector<std::string> ids;
  uint64_t seq = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    build_batch(body, ids, prefix, quiz_id, seq, batch);
    seq += static_cast<uint64_t>(batch);
    RawResult r = conn.request("POST", "/v1/answers", body);
    Rec rec;
    rec.outcome = r.outcome;
    rec.status = r.status;
    rec.retry_after = r.has_retry_after;
    rec.new_connection = r.new_connection;
    rec.started = r.started;
    rec.sent = r.sent;
    rec.ended = r.ended;
    if (r.outcome != Outcome::response) {
      rec.error = r.error;
    } else if (r.status == 200 ||
               (r.status == 503 && r.body.find("\"results\"") != std::string::npos)) {
      const BatchVerdicts v = parse_verdicts(r.body, ids);
      if (!v.problem.empty())
        rec.error = "body does not match the request: " + v.problem;
      else if (v.rejected + v.duplicates > 0)
        rec.error = std::to_string(v.rejected) + " rejected, " + std::to_string(v.duplicates) +
                    " duplicates: " + v.first_rejection;
      rec.accepted = v.accepted.size();
      for (size_t i : v.accepted) log.accepted.push_back(ids[i]);
    } else {
      rec.error_code = json_error_code(r.body);
      if (r.status != 503) rec.error = r.head + " | " + r.body.substr(0, 300);
    }
    const bool gone = r.outcome == Outcome::connect_refused;
    log.recs.push_back(std::move(rec));
    if (gone) break;
  }
}

struct LoadRun {
  std::string dir, run;
  std::unique_ptr<ServerProcess> server;
  int64_t quiz_id = 0;
  std::atomic<bool> stop{false};
  std::vector<ThreadLog> logs;
  std::vector<std::thread> threads;

  ~LoadRun() {
    stop.store(true);
    for (auto& t : threads)
      if (t.joinable()) t.join();
  }

  // Starts the server and `kThreads` clients posting batches of `batch` answers; returns an
  // empty string or what went wrong.
  std::string start(const std::string& tag, int batch) {
    if (std::string e = check_environment(); !e.empty()) return e;
    dir = make_temp_dir(tag);
    if (dir.empty()) return "mkdtemp failed: " + std::string(std::strerror(errno));
    server = std::make_unique<ServerProcess>(
        std::getenv("QUIZFLOW_BIN"), dir, tag,
        Env{{"QUIZFLOW_HTTP_ADDR", "127.0.0.1:0"},
            {"QUIZFLOW_API_TOKEN", std::nullopt},
            {"DB_WRITERS", "1"},
            {"BATCH_MAX_SIZE", "50"},
            {"QUIZFLOW_DRAIN_TIMEOUT_MS", std::to_string(kDrainTimeoutMs)}});
    if (std::string e = server->start(); !e.empty())
      return "starting the server: " + e + "\n" + server->log();
    quiz_id = unique_quiz_id();
    run = tag + "-" + std::to_string(wall_ms()) + "-" + std::to_string(::getpid());
    if (std::string e = create_quiz(server->port(), quiz_id, run); !e.empty()) return e;
    std::fprintf(stderr, "run %s, quiz %lld, server pid %d port %u, logs in %s\n", run.c_str(),
                 static_cast<long long>(quiz_id), static_cast<int>(server->pid()), server->port(),
                 dir.c_str());
    logs.resize(kThreads);
    for (int i = 0; i < kThreads; ++i)
      threads.emplace_back([this, i, batch] {
        run_client(server->port(), quiz_id, run + "-t" + std::to_string(i) + "-", batch, stop,
                   logs[static_cast<size_t>(i)]);
      });
    return {};
  }

  void join_clients() {
    stop.store(true);
    for (auto& t : threads) t.join();
    threads.clear();
  }

  // Every event id acknowledged accepted that is not in PostgreSQL (and the number of stored
  // rows of this run through `stored`).
  std::vector<std::string> missing_from_db(size_t& acked, size_t& stored, std::string& error) {
    std::unordered_set<std::string> ack;
    for (const auto& l : logs) ack.insert(l.accepted.begin(), l.accepted.end());
    acked = ack.size();
    const auto rows =
        psql_lines("SELECT event_id FROM answer_events WHERE event_id LIKE '" + run + "-%'", error);
    std::unordered_set<std::string> in_db(rows.begin(), rows.end());
    stored = in_db.size();
    std::vector<std::string> missing;
    if (!error.empty()) return missing;
    for (const auto& id : ack)
      if (!in_db.count(id)) missing.push_back(id);
    std::sort(missing.begin(), missing.end());
    return missing;
  }
};

// Polls connect() every millisecond from now until it is refused (or `limit` passes); returns
// the time the listener was first seen closed.
std::optional<Clock::time_point> watch_listener(uint16_t port, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    const auto t = Clock::now();
    if (connect_refused(port)) return t;
    std::this_thread::sleep_for(1ms);
  }
  return std::nullopt;
}

TEST(Drain, SigtermDuringLoadAnswersEveryRequestAndExitsZero) {
  LoadRun load;
  const std::string err = load.start("drain", 100);
  ASSERT_TRUE(err.empty()) << err;
  ServerProcess& server = *load.server;
  const uint16_t port = server.port();

  std::this_thread::sleep_for(kLoadBeforeSignal);
  const auto t_signal = Clock::now();
  ASSERT_TRUE(server.signal(SIGTERM));
  std::optional<Clock::time_point> t_closed;
  std::thread probe([&] {
    t_closed = watch_listener(port, std::chrono::milliseconds(kDrainTimeoutMs) + kExitMargin);
  });
  const ExitInfo ended = server.wait_exit(std::chrono::milliseconds(kDrainTimeoutMs) + kExitMargin);
  probe.join();
  // Let the clients see the closed server, then stop them.
  std::this_thread::sleep_for(200ms);
  load.join_clients();

  const auto rel = [&](Clock::time_point t) { return ms_between(t_signal, t); };
  std::fprintf(stderr, "SIGTERM at +0 ms; listener seen closed at %s; process: %s\n",
               t_closed ? ("+" + std::to_string(rel(*t_closed)) + " ms").c_str() : "never",
               ended.describe().c_str());
  EXPECT_TRUE(ended.ended && ended.exited && ended.code == 0)
      << "after SIGTERM: " << ended.describe() << " (limit QUIZFLOW_DRAIN_TIMEOUT_MS "
      << kDrainTimeoutMs << " ms + " << std::chrono::milliseconds(kExitMargin).count() << " ms)";
  EXPECT_TRUE(t_closed.has_value()) << "the listener never closed";

  // Classify every request.
  uint64_t n200 = 0, n503 = 0, n503_no_retry = 0, n200_after_signal = 0, acc_after_signal = 0;
  uint64_t conn_errors_ok = 0;
  std::map<std::string, uint64_t> codes_503;
  std::map<std::string, uint64_t> bad;  // kind -> count
  std::vector<std::string> bad_examples;
  auto flag = [&](const std::string& kind, const Rec& r) {
    ++bad[kind];
    if (bad_examples.size() < 12)
      bad_examples.push_back(kind + ": sent " +
                             (r.sent == Clock::time_point{} ? std::string("(not fully)")
                                                            : std::to_string(rel(r.sent)) + " ms") +
                             ", ended " + std::to_string(rel(r.ended)) + " ms after SIGTERM" +
                             (r.new_connection ? " on a new connection" : "") + ": " +
                             outcome_name(r.outcome) + " " +
                             (r.status ? "HTTP " + std::to_string(r.status) + " " : "") + r.error);
  };
  Clock::time_point last_200{};
  for (const auto& l : load.logs) {
    for (const auto& r : l.recs) {
      if (r.outcome == Outcome::response) {
        if (!r.error.empty()) flag("unexpected response", r);
        if (r.status == 200) {
          ++n200;
          last_200 = std::max(last_200, r.ended);
          if (r.ended > t_signal) {
            ++n200_after_signal;
            acc_after_signal += r.accepted;
          }
        } else if (r.status == 503) {
          ++n503;
          ++codes_503[r.error_code];
          if (!r.retry_after) ++n503_no_retry;
        }
        continue;
      }
      if (r.outcome == Outcome::timeout) {
        flag("timeout (a request never answered)", r);
        continue;
      }
      const bool connection_error = r.outcome == Outcome::connect_refused ||
                                    r.outcome == Outcome::send_failed ||
                                    r.outcome == Outcome::closed_before_response;
      if (!connection_error) {
        flag(std::string("broken response (") + outcome_name(r.outcome) + ")", r);
        continue;
      }
      if (!t_closed || r.ended + kCloseTolerance < *t_closed) {
        flag("connection error while the listener was still open", r);
        continue;
      }
      if (r.sent != Clock::time_point{} && r.sent + kAdmittedBeforeSignal < t_signal) {
        flag("request sent before SIGTERM dropped without a response", r);
        continue;
      }
      ++conn_errors_ok;
    }
  }
  std::string codes;
  for (const auto& [c, n] : codes_503)
    codes += " " + (c.empty() ? "?" : c) + "×" + std::to_string(n);
  std::fprintf(stderr,
               "clients: %llu × 200 (%llu answered after SIGTERM, %llu answers; last 200 at %+lld "
               "ms), %llu × 503 (codes:%s; %llu without Retry-After), %llu connection errors "
               "after the listener closed\n",
               static_cast<unsigned long long>(n200),
               static_cast<unsigned long long>(n200_after_signal),
               static_cast<unsigned long long>(acc_after_signal),
               static_cast<long long>(last_200 == Clock::time_point{} ? 0 : rel(last_200)),
               static_cast<unsigned long long>(n503), codes.c_str(),
               static_cast<unsigned long long>(n503_no_retry),
               static_cast<unsigned long long>(conn_errors_ok));
  std::string bad_text;
  for (const auto& [k, n] : bad) bad_text += "\n  " + k + ": " + std::to_string(n);
  for (const auto& e : bad_examples) bad_text += "\n    e.g. " + e;
  EXPECT_TRUE(bad.empty()) << "requests not answered as they should be:" << bad_text;
  EXPECT_GT(n200, 0u);
  EXPECT_GT(n503, 0u) << "no client saw a 503 between SIGTERM and the listener closing";
  EXPECT_EQ(n503_no_retry, 0u) << "503 responses without Retry-After";

  size_t acked = 0, stored = 0;
  std::string db_error;
  const auto missing = load.missing_from_db(acked, stored, db_error);
  ASSERT_TRUE(db_error.empty()) << db_error;
  std::fprintf(stderr,
               "PostgreSQL: %zu rows of this run, %zu acknowledged accepted, %zu missing, %zu "
               "stored without an accepted ack\n",
               stored, acked, missing.size(), stored + missing.size() - acked);
  EXPECT_TRUE(missing.empty()) << missing.size()
                               << " answers acknowledged accepted are not in PostgreSQL, e.g. "
                               << missing.front();
  const std::string log = server.log();
  EXPECT_NE(log.find("quizflow stopped"), std::string::npos) << "no orderly stop in the log";
  if (HasFailure())
    print_log(server, 24 * 1024);
  else
    std::filesystem::remove_all(load.dir);
}

TEST(Drain, SecondSignalDuringDrainForcesPromptExit) {
  LoadRun load;
  // Larger batches: several thousand answers in flight, so the drain is still running when the
  // second signal arrives.
  const std::string err = load.start("drain2", 500);
  ASSERT_TRUE(err.empty()) << err;
  ServerProcess& server = *load.server;

  std::this_thread::sleep_for(kLoadBeforeSignal);
  const auto t_signal = Clock::now();
  ASSERT_TRUE(server.signal(SIGTERM));
  std::this_thread::sleep_for(20ms);
  const bool second = server.signal(SIGTERM);
  const ExitInfo ended = server.wait_exit(5s);
  const int64_t took = ended.ended ? ms_between(t_signal, server.end_time()) : -1;
  std::this_thread::sleep_for(200ms);
  load.join_clients();

  const std::string log = server.log();
  const bool forced = log.find("second signal") != std::string::npos;
  std::fprintf(stderr,
               "two SIGTERMs 20 ms apart (second delivered: %s): %s, %lld ms after the "
               "first; log %s the second signal\n",
               second ? "yes" : "no (already gone)", ended.describe().c_str(),
               static_cast<long long>(took), forced ? "reports" : "does not report");
  EXPECT_TRUE(ended.ended) << "the process did not exit within 5 s of two SIGTERMs";
  EXPECT_TRUE(!ended.ended || ended.exited)
      << "the process did not exit on its own: " << ended.describe();
  EXPECT_TRUE(forced || (ended.exited && ended.code == 0))
      << "exited " << ended.describe() << " without logging the forced exit";

  uint64_t n200 = 0, n503 = 0, timeouts = 0, other = 0;
  std::vector<std::string> timeout_examples;
  for (const auto& l : load.logs)
    for (const auto& r : l.recs) {
      if (r.outcome == Outcome::response && r.status == 200)
        ++n200;
      else if (r.outcome == Outcome::response && r.status == 503)
        ++n503;
      else if (r.outcome == Outcome::timeout) {
        ++timeouts;
        if (timeout_examples.size() < 5) timeout_examples.push_back(r.error);
      } else
        ++other;
    }
  std::fprintf(stderr, "clients: %llu × 200, %llu × 503, %llu timeouts, %llu other outcomes\n",
               static_cast<unsigned long long>(n200), static_cast<unsigned long long>(n503),
               static_cast<unsigned long long>(timeouts), static_cast<unsigned long long>(other));
  EXPECT_EQ(timeouts, 0u) << "client calls hung until their timeout, e.g. "
                          << (timeout_examples.empty() ? "" : timeout_examples.front());
  EXPECT_GT(n200, 0u);

  // A forced exit may drop unanswered requests, never an acknowledged answer.
  size_t acked = 0, stored = 0;
  std::string db_error;
  const auto missing = load.missing_from_db(acked, stored, db_error);
  ASSERT_TRUE(db_error.empty()) << db_error;
  std::fprintf(stderr, "PostgreSQL: %zu rows of this run, %zu acknowledged accepted, %zu missing\n",
               stored, acked, missing.size());
  EXPECT_TRUE(missing.empty()) << missing.size()
                               << " answers acknowledged accepted are not in PostgreSQL, e.g. "
                               << missing.front();
  if (HasFailure())
    print_log(server, 24 * 1024);
  else
    std::filesystem::remove_all(load.dir);
}

}  // namespace
