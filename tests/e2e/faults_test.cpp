// Faults under load (issue 13, item 8; spec §5 invariant 1: an acknowledged answer is in
// PostgreSQL and survives kill -9). The built quizflow binary (QUIZFLOW_BIN) serves client threads
// that post batches of answers like a bot does: a request whose outcome is unknown (connection
// reset, timeout, 408, 503) is sent again with the same event ids until it comes back `accepted`
// or `duplicate`. Meanwhile a fault is injected:
//   - kill -9 of the engine at a random moment, N rounds (5; 20 with QUIZFLOW_TEST_LONG=1);
//   - a PostgreSQL hang: a private server (never the shared one of scripts/test) with its
//     postmaster and every backend stopped (SIGSTOP) for 12 s, then continued;
//   - PostgreSQL restarts of a private server under load: pg_ctl restart -m fast, restart
//     -m immediate (crash recovery), and an outage (stop -m immediate, 3 s, start), in turn
//     (3 rounds; 9 with QUIZFLOW_TEST_LONG=1);
//   - Kafka faults on a mock cluster in a child process (qf-mock-kafka) with HTTP in Kafka mode
//     and the answers consumed from quiz.answers: produce, fetch and offset-commit request
//     errors, dropped connections, every broker down.
// Afterwards every answer acknowledged (`accepted`, or `duplicate` after an unknown outcome) is in
// the event log exactly once with the content sent, nothing is stored that was not sent, and the
// standings table equals an independent computation (spec §4) of everything sent. Each test prints
// one line "FAULT <name> rounds=… acknowledged=… lost=… duplicated=… …" (docs/reliability.md).
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "e2e/load_helpers.h"
#include "support/kafka_reader.h"
#include "support/mock_kafka_process.h"
#include "unit/test_util.h"

#ifndef QF_SOURCE_DIR
#error "QF_SOURCE_DIR (the source tree, for scripts/lib/pg.sh) must be defined by CMake"
#endif

namespace {

using namespace quizflow::loadtest;
using qf_e2e::CommandResult;
using qf_e2e::ScratchDatabase;
using quizflow::test::cat;
using quizflow::testing::MockKafkaProcess;

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

bool long_mode() {
  const char* v = std::getenv("QUIZFLOW_TEST_LONG");
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

// QF_FAULTS_SEED replays a run (the seed is printed); otherwise a random one.
uint64_t test_seed() {
  if (const char* v = std::getenv("QF_FAULTS_SEED"); v != nullptr && *v != '\0')
    return std::strtoull(v, nullptr, 10);
  return std::random_device{}() ^ static_cast<uint64_t>(wall_ms());
}

constexpr int kBots = 3;              // client threads
constexpr int kBatch = 40;            // answers per new request
constexpr auto kClientTimeout = 20s;  // > the 12 s hang: the server's answer comes first
constexpr auto kBackoff = 150ms;      // before sending again after an unknown outcome

// The PostgreSQL hang test also asserts that GET /health says 503 with a commit-stall reason
// during the hang (QUIZFLOW_HEALTH_MAX_COMMIT_STALL_MS, spec §3); the samples are printed either
// way ("HEALTH during the hang …").
constexpr bool kAssertCommitStallHealth = true;

// ---------------------------------------------------------------------------------------------
// Quizzes and answers
// ---------------------------------------------------------------------------------------------

struct Question {
  int id, options, correct;
  int64_t points, limit_ms;
};

struct Quiz {
  int64_t id;
  std::vector<Question> questions;
};

// Three quizzes of six questions, open from an hour ago for two hours.
struct Catalog {
  std::vector<Quiz> quizzes;
  int64_t opens_ms = 0, closes_ms = 0;

  explicit Catalog(uint64_t seed) {
    std::mt19937_64 rng(seed);
    opens_ms = wall_ms() - 3'600'000;
    closes_ms = opens_ms + 7'200'000;
    for (int q = 0; q < 3; ++q) {
      Quiz quiz{qf_e2e::next_quiz_id(), {}};
      for (int k = 1; k <= 6; ++k) {
        Question qu;
        qu.id = k;
        qu.options = 2 + static_cast<int>(rng() % 4);
        qu.correct = static_cast<int>(rng() % static_cast<uint64_t>(qu.options));
        qu.points = 100 + static_cast<int64_t>(rng() % 1900);
        qu.limit_ms = 5000 + static_cast<int64_t>(rng() % 25000);
        quiz.questions.push_back(qu);
      }
      quizzes.push_back(std::move(quiz));
    }
  }

  const Question& question(int64_t quiz_id, int question_id) const {
    for (const Quiz& q : quizzes)
      if (q.id == quiz_id) return q.questions.at(static_cast<size_t>(question_id - 1));
    throw std::out_of_range("no such quiz");
  }

  // POSTs every quiz; returns an empty string or what went wrong.
  std::string create(uint16_t port) const {
    for (const Quiz& q : quizzes) {
      std::vector<qf_e2e::QuestionSpec> specs;
      for (const Question& qu : q.questions)
        specs.push_back({qu.id, qu.options, qu.correct, qu.points, qu.limit_ms});
      const std::string body =
          qf_e2e::quiz_json(q.id, cat("faults ", q.id), opens_ms, closes_ms, specs, {});
      try {
        qf_e2e::HttpClient c("127.0.0.1", port, 20s);
        const auto r = c.request("POST", "/v1/quizzes", body);
        if (r.status != 201 && r.status != 200)
          return cat("POST /v1/quizzes: HTTP ", r.status, " ", r.body);
      } catch (const std::exception& e) {
        return cat("POST /v1/quizzes: ", e.what());
      }
    }
    return {};
  }
};

struct Answer {
  std::string id;
  int64_t quiz, user;
  int question, option;
  int64_t at_ms, elapsed_ms;
};

std::string answer_body(const Answer& a) {
  return qf_e2e::answer_json({a.id, a.quiz, a.user, a.question, a.option, a.at_ms, a.elapsed_ms});
}

// ---------------------------------------------------------------------------------------------
// A bot: posts batches, resends what has an unknown outcome, remembers every verdict
// ---------------------------------------------------------------------------------------------

enum class Fate : uint8_t {
  unsent,        // never reached the server
  in_doubt,      // sent; no verdict yet (connection broken, timeout, 408, 503 …)
  acknowledged,  // `accepted`, or `duplicate` after an unknown outcome
  refused,       // a verdict the answer should never get (recorded as a problem)
};

// How one request ended, for the phase reports.
struct Rec {
  Clock::time_point started, ended;
  std::string result;  // "200", "503", "408", or an Outcome name
  size_t accepted = 0;
  std::string error;  // how a request without a response ended
};

// Whether a rejection code means "the server could not decide now": the answer is resent.
bool server_failure_code(const std::string& code) {
  return code == "storage_unavailable" || code == "internal_error" || code == "overloaded" ||
         code == "timeout" || code == "shutting_down";
}

class Bot {
 public:
  // `batch` answers per new request.
  Bot(std::string prefix, uint64_t seed, const Catalog& catalog, int batch)
      : prefix_(std::move(prefix)), rng_(seed), catalog_(&catalog), batch_(batch) {}

  enum class Step { answered, doubt, down };

  // Sends one request: the oldest one whose outcome is unknown, else a new batch.
  Step step(RawConn& conn) {
    std::vector<uint32_t> items;
    const bool resend = !resend_.empty();
    if (resend) {
      items = std::move(resend_.front());
      resend_.pop_front();
    } else {
      items = new_batch();
    }
    std::vector<std::string> bodies;
    for (uint32_t i : items) bodies.push_back(answer_body(answers[i]));
    const RawResult r = conn.request("POST", "/v1/answers", qf_e2e::batch_json(bodies));
    Rec rec{r.started, r.ended,
            r.outcome == Outcome::response ? std::to_string(r.status) : outcome_name(r.outcome), 0,
            r.error};
    if (r.outcome == Outcome::connect_refused || r.outcome == Outcome::connect_failed) {
      resend_.push_front(std::move(items));  // never sent
      return Step::down;
    }
    ++requests;
    if (resend) {
      ++resent_requests;
      resent_answers += static_cast<int64_t>(items.size());
    }
    Step step = Step::answered;
    if (r.outcome != Outcome::response) {
      doubt(items);
      step = Step::doubt;
    } else if (r.status == 200 || r.status == 503) {
      std::vector<uint32_t> again;
      if (!verdicts(r, items, again, rec.accepted)) {
        doubt(items);
        step = Step::doubt;
      } else if (!again.empty()) {
        doubt(again);
        step = Step::doubt;
      }
    } else if (r.status == 408 || r.status == 500 || r.status == 502 || r.status == 504) {
      doubt(items);
      step = Step::doubt;
    } else {
      problem(cat("HTTP ", r.status, " to a batch of valid answers: ", r.body.substr(0, 300)));
      for (uint32_t i : items) fate[i] = Fate::refused;
    }
    {
      std::lock_guard<std::mutex> lock(recs_mu_);
      recs_.push_back(std::move(rec));
    }
    return step;
  }

  // Calls f(rec) for every request so far; safe while the bot's thread runs.
  template <typename F>
  void for_each_rec(F&& f) const {
    std::lock_guard<std::mutex> lock(recs_mu_);
    for (const Rec& r : recs_) f(r);
  }

  bool has_resends() const { return !resend_.empty(); }
  size_t resends_waiting() const { return resend_.size(); }

  std::vector<Answer> answers;
  std::vector<Fate> fate;
  std::vector<std::string> problems;
  int64_t requests = 0, resent_requests = 0, resent_answers = 0, doubts = 0;
  int64_t accepted = 0, duplicate_after_doubt = 0;

 private:
  std::vector<uint32_t> new_batch() {
    std::vector<uint32_t> items;
    for (int k = 0; k < batch_; ++k) {
      const Quiz& q = catalog_->quizzes[rng_() % catalog_->quizzes.size()];
      const Question& qu = q.questions[rng_() % q.questions.size()];
      Answer a;
      a.id = cat(prefix_, answers.size());
      a.quiz = q.id;
      a.user = 1 + static_cast<int64_t>(rng_() % 300);
      a.question = qu.id;
      a.option = static_cast<int>(rng_() % static_cast<uint64_t>(qu.options));
      // Within a minute: answered_at ties (broken by event_id) and supersedes are common.
      a.at_ms = catalog_->opens_ms + 60'000 + static_cast<int64_t>(rng_() % 60) * 1000;
      a.elapsed_ms = static_cast<int64_t>(rng_() % static_cast<uint64_t>(qu.limit_ms + 1));
      items.push_back(static_cast<uint32_t>(answers.size()));
      answers.push_back(std::move(a));
      fate.push_back(Fate::unsent);
    }
    return items;
  }

  void doubt(const std::vector<uint32_t>& items) {
    ++doubts;
    for (uint32_t i : items)
      if (fate[i] == Fate::unsent) fate[i] = Fate::in_doubt;
    resend_.push_back(items);
  }

  void problem(std::string what) {
    if (problems.size() < 20) problems.push_back(std::move(what));
  }

  // Applies the per-item verdicts of a 200 (or of a 503 that carries them); items the server
  // could not decide go to `again`. False when the body does not match the request.
  bool verdicts(const RawResult& r, const std::vector<uint32_t>& items,
                std::vector<uint32_t>& again, size_t& accepted_here) {
    rapidjson::Document d;
    d.Parse(r.body.c_str(), r.body.size());
    const bool has_results =
        !d.HasParseError() && d.IsObject() && d.HasMember("results") && d["results"].IsArray();
    if (!has_results) {
      if (r.status != 503) problem(cat("HTTP 200 without results: ", r.body.substr(0, 300)));
      return false;
    }
    const auto& arr = d["results"];
    if (arr.Size() != items.size()) {
      problem(cat(arr.Size(), " results for ", items.size(), " answers"));
      return false;
    }
    for (rapidjson::SizeType k = 0; k < arr.Size(); ++k) {
      const uint32_t i = items[k];
      const auto& it = arr[k];
      auto field = [&](const char* name) -> std::string {
        return it.IsObject() && it.HasMember(name) && it[name].IsString() ? it[name].GetString()
                                                                          : "";
      };
      if (field("event_id") != answers[i].id) {
        problem(cat("result ", k, " is for \"", field("event_id"), "\", sent ", answers[i].id));
        return false;
      }
      const std::string status = field("status");
      if (status == "accepted") {
        // An acknowledgement (in a 503 too: the item claims to be committed; held to it).
        ++accepted;
        ++accepted_here;
        fate[i] = Fate::acknowledged;
      } else if (status == "duplicate") {
        if (fate[i] == Fate::in_doubt) {
          ++duplicate_after_doubt;
          fate[i] = Fate::acknowledged;
        } else if (fate[i] != Fate::acknowledged) {
          problem(cat(answers[i].id, ": duplicate on its first send"));
          fate[i] = Fate::refused;
        }
      } else if (server_failure_code(field("code"))) {
        again.push_back(i);
      } else {
        problem(cat(answers[i].id, ": ", status, " ", field("code"), " ", field("message")));
        fate[i] = Fate::refused;
      }
    }
    return true;
  }

  std::string prefix_;
  std::mt19937_64 rng_;
  const Catalog* catalog_;
  int batch_;
  std::deque<std::vector<uint32_t>> resend_;  // requests whose outcome is unknown, oldest first
  mutable std::mutex recs_mu_;
  std::vector<Rec> recs_;  // guarded by recs_mu_ (read by the test's thread during the load)
};

// What the bots' threads share with the test's thread: the server's port (0: none) and the stop
// flag.
struct Target {
  std::atomic<uint16_t> port{0};
  std::atomic<bool> stop{false};
};

// Runs `bot` until `t.stop`; with `until_down`, also returns once the server refuses connections;
// with `resends_only`, sends no new batch and returns once nothing waits to be resent.
// `pause` is a wait after each answered request (a slower bot).
void run_bot(Bot& bot, Target& t, bool until_down, bool resends_only,
             std::chrono::milliseconds pause) {
  std::unique_ptr<RawConn> conn;
  uint16_t current = 0;
  while (!t.stop.load()) {
    if (resends_only && !bot.has_resends()) return;
    const uint16_t port = t.port.load();
    if (port == 0) {
      std::this_thread::sleep_for(20ms);
      continue;
    }
    if (port != current) {
      conn = std::make_unique<RawConn>(port, kClientTimeout);
      current = port;
    }
    switch (bot.step(*conn)) {
      case Bot::Step::down:
        if (until_down) return;
        std::this_thread::sleep_for(50ms);
        break;
      case Bot::Step::doubt:
        std::this_thread::sleep_for(kBackoff);
        break;
      case Bot::Step::answered:
        if (pause.count() > 0) std::this_thread::sleep_for(pause);
        break;
    }
  }
}

// The bots of a test and their threads.
class Load {
 public:
  // kBots bots posting `batch` answers per request, waiting `pause` after each answered one.
  Load(const std::string& tag, uint64_t seed, const Catalog& catalog, int batch = kBatch,
       std::chrono::milliseconds pause = 0ms)
      : pause_(pause) {
    for (int i = 0; i < kBots; ++i)
      bots_.push_back(std::make_unique<Bot>(cat(tag, "-", seed % 100000, "-b", i, "-"),
                                            seed * 31 + static_cast<uint64_t>(i), catalog, batch));
  }
  ~Load() { join(); }

  void start(uint16_t port, bool until_down = false) {
    join();
    target_.stop.store(false);
    target_.port.store(port);
    for (auto& b : bots_)
      threads_.emplace_back(
          [this, b = b.get(), until_down] { run_bot(*b, target_, until_down, false, pause_); });
  }

  void join() {
    target_.stop.store(true);
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  // Sends again everything whose outcome is unknown until each has a verdict or `limit` passed;
  // true when nothing is left in doubt.
  bool resolve(uint16_t port, std::chrono::milliseconds limit) {
    join();
    target_.stop.store(false);
    target_.port.store(port);
    std::atomic<int> finished{0};
    for (auto& b : bots_)
      threads_.emplace_back([this, b = b.get(), &finished] {
        run_bot(*b, target_, false, true, 0ms);
        finished.fetch_add(1);
      });
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline && finished.load() < static_cast<int>(bots_.size()))
      std::this_thread::sleep_for(20ms);
    join();
    return waiting() == 0;
  }

  // Requests waiting to be sent again (only while no thread runs).
  size_t waiting() const {
    size_t n = 0;
    for (const auto& b : bots_) n += b->resends_waiting();
    return n;
  }

  const std::vector<std::unique_ptr<Bot>>& bots() const { return bots_; }

  int64_t sum(int64_t Bot::*field) const {
    int64_t n = 0;
    for (const auto& b : bots_) n += (*b).*field;
    return n;
  }

  int64_t acknowledged() const {
    int64_t n = 0;
    for (const auto& b : bots_)
      for (Fate f : b->fate) n += f == Fate::acknowledged ? 1 : 0;
    return n;
  }

  std::vector<std::string> problems() const {
    std::vector<std::string> out;
    for (const auto& b : bots_) out.insert(out.end(), b->problems.begin(), b->problems.end());
    return out;
  }

  // "200=123 503=4 closed_before_response=2" over requests that started in [from, to).
  std::string results_between(Clock::time_point from, Clock::time_point to) const {
    std::map<std::string, int> n;
    for (const auto& b : bots_)
      b->for_each_rec([&](const Rec& r) {
        if (r.started >= from && r.started < to) ++n[r.result];
      });
    std::string s;
    for (const auto& [k, v] : n) s += cat(s.empty() ? "" : " ", k, "=", v);
    return s.empty() ? "none" : s;
  }

  // One line per request that started in [from, to) and got no 200: when it started and ended
  // (seconds after `origin`), how, and why.
  std::string failures_between(Clock::time_point from, Clock::time_point to,
                               Clock::time_point origin, int max_lines = 60) const {
    std::string s;
    int lines = 0;
    for (const auto& b : bots_)
      b->for_each_rec([&](const Rec& r) {
        if (r.started < from || r.started >= to || r.result == "200") return;
        if (++lines > max_lines) return;
        char line[200];
        std::snprintf(line, sizeof line, "  %+.2fs .. %+.2fs %s",
                      seconds_between(origin, r.started), seconds_between(origin, r.ended),
                      r.result.c_str());
        s += line;
        if (!r.error.empty()) s += " (" + r.error + ")";
        s += '\n';
      });
    if (lines > max_lines) s += cat("  … and ", lines - max_lines, " more\n");
    return s;
  }

  // The first moment after `from` at which a request started after `from` got an answer
  // acknowledged (nullopt: none).
  std::optional<Clock::time_point> first_ack_after(Clock::time_point from) const {
    std::optional<Clock::time_point> first;
    for (const auto& b : bots_)
      b->for_each_rec([&](const Rec& r) {
        if (r.started >= from && r.accepted > 0 && (!first || r.ended < *first)) first = r.ended;
      });
    return first;
  }

 private:
  std::vector<std::unique_ptr<Bot>> bots_;
  std::vector<std::thread> threads_;
  Target target_;
  std::chrono::milliseconds pause_;
};

// ---------------------------------------------------------------------------------------------
// The check: acknowledged = stored exactly once; standings = independent computation
// ---------------------------------------------------------------------------------------------

struct Check {
  int64_t acknowledged = 0, lost = 0, duplicated = 0, in_doubt = 0, stored = 0;
  int64_t phantom = 0;              // stored, never sent (or refused)
  int64_t corrupted = 0;            // stored with other content than sent
  int64_t standings_mismatch = -1;  // players whose stored standing differs (-1: not compared)
  int64_t counted = 0;              // counted answers of the independent computation
  std::set<std::string> counted_notification_ids;  // answer_result ids they must have produced
  std::vector<std::string> examples;
  std::string error;

  bool clean() const {
    return error.empty() && lost == 0 && duplicated == 0 && in_doubt == 0 && phantom == 0 &&
           corrupted == 0 && standings_mismatch == 0;
  }
  void example(std::string s) {
    if (examples.size() < 10) examples.push_back(std::move(s));
  }
  std::string describe() const {
    std::string s = cat("acknowledged=", acknowledged, " stored=", stored, " lost=", lost,
                        " duplicated=", duplicated, " in_doubt=", in_doubt, " phantom=", phantom,
                        " corrupted=", corrupted, " standings_mismatch=", standings_mismatch);
    if (!error.empty()) s += "\nerror: " + error;
    for (const auto& e : examples) s += "\n  " + e;
    return s;
  }
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.emplace_back(text, start, end - start);
    start = end + 1;
  }
  return out;
}

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t p = line.find(sep, start);
    out.push_back(line.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) return out;
    start = p + 1;
  }
}

int64_t scalar(const std::string& url, const std::string& sql, const std::string& dir) {
  const CommandResult r = qf_e2e::psql(url, sql, dir);
  try {
    return r.exit_code == 0 ? std::stoll(r.out) : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

Check verify(const std::string& url, const std::string& dir, const Load& load,
             const Catalog& catalog) {
  Check c;
  // The event log: id -> "quiz|user|question|option|elapsed|answered_at ms", and rows per id.
  const CommandResult r =
      qf_e2e::psql(url,
                   "SELECT event_id, quiz_id, user_id, question_id, option_id, elapsed_ms, "
                   "(extract(epoch FROM answered_at) * 1000)::bigint FROM answer_events",
                   dir);
  if (r.exit_code != 0) {
    c.error = "reading answer_events: " + r.show();
    return c;
  }
  std::unordered_map<std::string, std::string> stored;
  for (const std::string& line : lines_of(r.out)) {
    const size_t bar = line.find('|');
    const std::string id = line.substr(0, bar);
    if (!stored.emplace(id, line.substr(bar + 1)).second) {
      ++c.duplicated;
      c.example("stored twice: " + id);
    }
  }
  c.stored = static_cast<int64_t>(stored.size());
  // Everything sent, with what its fate was.
  std::unordered_map<std::string, const Answer*> sent;
  std::vector<const Answer*> in_log;  // every answer the log must hold (all resolved)
  for (const auto& b : load.bots()) {
    for (size_t i = 0; i < b->answers.size(); ++i) {
      const Answer& a = b->answers[i];
      const Fate f = b->fate[i];
      if (f == Fate::unsent || f == Fate::refused) continue;
      sent.emplace(a.id, &a);
      if (f == Fate::in_doubt) {
        ++c.in_doubt;
        c.example("no verdict after every resend: " + a.id);
        continue;
      }
      ++c.acknowledged;
      in_log.push_back(&a);
      auto it = stored.find(a.id);
      if (it == stored.end()) {
        ++c.lost;
        c.example("acknowledged, not in PostgreSQL: " + a.id);
        continue;
      }
      const std::string want =
          cat(a.quiz, "|", a.user, "|", a.question, "|", a.option, "|", a.elapsed_ms, "|", a.at_ms);
      if (it->second != want) {
        ++c.corrupted;
        c.example(cat(a.id, " stored as ", it->second, ", sent ", want));
      }
    }
  }
  for (const auto& [id, row] : stored)
    if (!sent.count(id)) {
      ++c.phantom;
      c.example("stored but never sent (or refused): " + id);
    }
  if (c.in_doubt > 0) return c;  // the standings depend on what the doubtful ones did

  // Spec §4, computed from what was sent: per (quiz, user, question) the answer with the smallest
  // (answered_at, event_id) counts.
  std::map<std::tuple<int64_t, int64_t, int>, const Answer*> counted;
  for (const Answer* a : in_log) {
    auto [it, fresh] = counted.try_emplace({a->quiz, a->user, a->question}, a);
    if (!fresh && std::tie(a->at_ms, a->id) < std::tie(it->second->at_ms, it->second->id))
      it->second = a;
  }
  c.counted = static_cast<int64_t>(counted.size());
  std::map<std::pair<int64_t, int64_t>, std::tuple<int64_t, int64_t, int64_t>> want;
  for (const auto& [key, a] : counted) {
    const Question& qu = catalog.question(a->quiz, a->question);
    auto& [score, correct, time_ms] = want[{a->quiz, a->user}];
    if (a->option == qu.correct) {
      score += qu.points - (qu.points * a->elapsed_ms) / (2 * qu.limit_ms);
      correct += 1;
    }
    time_ms += a->elapsed_ms;
    c.counted_notification_ids.insert(cat("answer_result:", a->quiz, ":", a->user, ":", a->id));
  }
  const CommandResult s =
      qf_e2e::psql(url, "SELECT quiz_id, user_id, score, correct, time_ms FROM standings", dir);
  if (s.exit_code != 0) {
    c.error = "reading standings: " + s.show();
    return c;
  }
  c.standings_mismatch = 0;
  std::set<std::pair<int64_t, int64_t>> seen;
  for (const std::string& line : lines_of(s.out)) {
    const std::vector<std::string> f = split(line, '|');
    if (f.size() != 5) {
      c.error = "unexpected standings line: " + line;
      return c;
    }
    const std::pair<int64_t, int64_t> key{std::stoll(f[0]), std::stoll(f[1])};
    seen.insert(key);
    auto it = want.find(key);
    const std::tuple<int64_t, int64_t, int64_t> got{std::stoll(f[2]), std::stoll(f[3]),
                                                    std::stoll(f[4])};
    if (it == want.end() || it->second != got) {
      ++c.standings_mismatch;
      c.example("standing differs: " + line);
    }
  }
  for (const auto& [key, v] : want)
    if (!seen.count(key)) {
      ++c.standings_mismatch;
      c.example(cat("standing missing: quiz ", key.first, " user ", key.second));
    }
  return c;
}

// The summary line of a test, for docs/reliability.md:
//   FAULT <name> rounds=… acknowledged=… lost=… duplicated=… standings_mismatch=…
//         in_doubt_outcomes=… (requests whose outcome was unknown) resent=… (requests sent again)
//         resent_answers=… doubtful_found_stored=… (answers in doubt answered `duplicate` on the
//         resend: they had been committed) seconds=… <extra>
void print_fault_line(const std::string& name, int rounds, const Load& load, const Check& c,
                      double seconds, const std::string& extra = "") {
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.1f", seconds);
  const std::string line = cat(
      "FAULT ", name, " rounds=", rounds, " acknowledged=", c.acknowledged, " lost=", c.lost,
      " duplicated=", c.duplicated, " standings_mismatch=", c.standings_mismatch,
      " in_doubt_outcomes=", load.sum(&Bot::doubts), " resent=", load.sum(&Bot::resent_requests),
      " resent_answers=", load.sum(&Bot::resent_answers),
      " doubtful_found_stored=", load.sum(&Bot::duplicate_after_doubt), " seconds=", secs,
      extra.empty() ? "" : " ", extra);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------------
// A private PostgreSQL (scripts/lib/pg.sh), to stop or restart without touching the shared one
// ---------------------------------------------------------------------------------------------

class PrivatePostgres {
 public:
  explicit PrivatePostgres(const std::string& dir) : dir_(dir) {
    const CommandResult r =
        bash("pg_start >&2 && printf '%s\\n%s\\n' \"$QF_PG_DIR\" \"$DATABASE_URL\"",
             /*with_dir=*/false);
    const std::vector<std::string> out = lines_of(r.out);
    if (r.exit_code != 0 || out.size() != 2) {
      error_ = "starting a private PostgreSQL with scripts/lib/pg.sh: " + r.show();
      return;
    }
    pg_dir_ = out[0];
    url_ = out[1];
  }

  ~PrivatePostgres() {
    if (pg_dir_.empty()) return;
    signal_all(SIGCONT);  // a failed assertion may leave it stopped
    const CommandResult r = bash("pg_stop >&2", true);
    if (r.exit_code != 0) std::fprintf(stderr, "pg_stop: %s\n", r.show().c_str());
  }
  PrivatePostgres(const PrivatePostgres&) = delete;
  PrivatePostgres& operator=(const PrivatePostgres&) = delete;

  const std::string& error() const { return error_; }
  const std::string& url() const { return url_; }

  // Sends `sig` to the postmaster and every process it started (postmaster first for SIGSTOP, so
  // it forks no new backend; last for SIGCONT). Returns how many processes got it.
  int signal_all(int sig) {
    const pid_t pm = postmaster();
    if (pm <= 0) return 0;
    int n = 0;
    if (sig == SIGSTOP && ::kill(pm, sig) == 0) ++n;
    // Twice: a backend forked while the first pass ran is caught by the second.
    std::set<pid_t> done;
    for (int pass = 0; pass < 2; ++pass)
      for (pid_t child : children_of(pm))
        if (done.insert(child).second && ::kill(child, sig) == 0) ++n;
    if (sig != SIGSTOP && ::kill(pm, sig) == 0) ++n;
    return n;
  }

  // pg_ctl restart -m `mode` (fast, immediate), waiting until it accepts connections again;
  // when the server is stopped, starts it (with the options it last ran with).
  std::string restart(const std::string& mode) { return pg_ctl("-m " + mode + " restart"); }
  // pg_ctl stop -m `mode`.
  std::string stop(const std::string& mode) { return pg_ctl("-m " + mode + " stop"); }

 private:
  std::string pg_ctl(const std::string& args) {
    const CommandResult r = bash(
        "_qf_pg_as \"$(_qf_pg_bindir)\"/pg_ctl -D \"$QF_PG_DIR/data\" -l \"$QF_PG_DIR/log\" -w "
        "-t 60 " +
            args + " >&2",
        true);
    return r.exit_code == 0 ? "" : "pg_ctl " + args + ": " + r.show();
  }

  CommandResult bash(const std::string& script, bool with_dir) {
    qf_e2e::Env env = {{"DATABASE_URL", std::nullopt}, {"QF_PG_PORT", std::nullopt}};
    env.emplace_back("QF_PG_DIR", with_dir ? std::optional<std::string>(pg_dir_) : std::nullopt);
    return qf_e2e::run_command(
        {"/bin/bash", "-c", "set -u; source \"$0\"; " + script, QF_SOURCE_DIR "/scripts/lib/pg.sh"},
        env, dir_, 120s);
  }

  pid_t postmaster() const {
    const std::string text = qf_e2e::read_file(pg_dir_ + "/data/postmaster.pid");
    return text.empty() ? -1 : static_cast<pid_t>(std::strtol(text.c_str(), nullptr, 10));
  }

  static std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> out;
    DIR* d = ::opendir("/proc");
    if (d == nullptr) return out;
    while (dirent* e = ::readdir(d)) {
      const pid_t pid = static_cast<pid_t>(std::strtol(e->d_name, nullptr, 10));
      if (pid <= 0) continue;
      const std::string stat = qf_e2e::read_file(cat("/proc/", pid, "/stat"));
      const size_t close = stat.rfind(')');  // the command name may hold blanks
      if (close == std::string::npos) continue;
      char state = 0;
      long ppid = 0;
      if (std::sscanf(stat.c_str() + close + 1, " %c %ld", &state, &ppid) == 2 && ppid == parent)
        out.push_back(pid);
    }
    ::closedir(d);
    return out;
  }

  std::string dir_, pg_dir_, url_, error_;
};

// ---------------------------------------------------------------------------------------------
// Common set-up of a test
// ---------------------------------------------------------------------------------------------

struct FaultRun {
  std::string bin, admin_url, dir;
  uint64_t seed = 0;
  std::string error;

  explicit FaultRun(const std::string& tag) {
    error = check_environment();
    if (!error.empty()) return;
    std::string e;
    bin = qf_e2e::quizflow_bin(e);
    admin_url = qf_e2e::database_url(e);
    dir = make_temp_dir(tag);
    if (dir.empty()) error = "mkdtemp failed";
    seed = test_seed();
    std::printf("%s: seed %" PRIu64 " (QF_FAULTS_SEED=%" PRIu64 " replays it), logs in %s\n",
                tag.c_str(), seed, seed, dir.c_str());
    std::fflush(stdout);
  }
};

double seconds_since(Clock::time_point t0) { return seconds_between(t0, Clock::now()); }

bool alive(ServerProcess& s) { return !s.wait_exit(0ms).ended; }

// ---------------------------------------------------------------------------------------------
// 1. kill -9 rounds under load
// ---------------------------------------------------------------------------------------------

TEST(Faults, KillDashNineRoundsUnderLoadLoseNothingAcknowledged) {
  const FaultRun setup("faults-kill9");
  ASSERT_TRUE(setup.error.empty()) << setup.error;
  const auto t0 = Clock::now();
  const int rounds = long_mode() ? 20 : 5;
  ScratchDatabase db(setup.admin_url, setup.dir);
  ASSERT_TRUE(db.error().empty()) << db.error();
  const Env env = qf_e2e::isolated_env(db.url(), {{"BATCH_MAX_DELAY_MS", "2"}});
  const Catalog catalog(setup.seed);
  Load load("k9", setup.seed, catalog);
  std::mt19937_64 rng(setup.seed);
  std::string kills;
  for (int round = 0; round < rounds; ++round) {
    ServerProcess s(setup.bin, setup.dir, cat("kill9-", round), env);
    const std::string started = s.start();
    if (!started.empty()) print_log(s);
    ASSERT_EQ(started, "") << "round " << round;
    if (round == 0) {
      ASSERT_EQ(catalog.create(s.port()), "");
    }
    const int64_t before = load.acknowledged();
    load.start(s.port(), /*until_down=*/true);
    const int at_ms = 200 + static_cast<int>(rng() % 601);
    std::this_thread::sleep_for(std::chrono::milliseconds(at_ms));
    s.kill_now();  // SIGKILL, reaped
    load.join();
    kills += cat(kills.empty() ? "" : ",", at_ms);
    std::printf("kill9 round %d: killed %d ms into the load; %" PRId64
                " acknowledged this round, %zu requests to resend\n",
                round, at_ms, load.acknowledged() - before, load.waiting());
  }
  // A last run: everything whose outcome is unknown is sent again, then the check.
  ServerProcess last(setup.bin, setup.dir, "kill9-last", env);
  ASSERT_EQ(last.start(), "");
  EXPECT_TRUE(load.resolve(last.port(), 60s))
      << load.waiting() << " requests still without a verdict after 60 s";
  const Check c = verify(db.url(), setup.dir, load, catalog);
  print_fault_line("kill9", rounds, load, c, seconds_since(t0), "kill_ms=" + kills);
  EXPECT_TRUE(c.clean()) << c.describe();
  EXPECT_GT(c.acknowledged, 0);
  const auto problems = load.problems();
  EXPECT_TRUE(problems.empty()) << problems.size()
                                << " unexpected verdicts, first: " << problems.front();
  if (HasFailure()) print_log(last);
}

// ---------------------------------------------------------------------------------------------
// 2. PostgreSQL hang under load
// ---------------------------------------------------------------------------------------------

struct HealthSample {
  double at_s;  // since the hang began
  std::string result;
};

HealthSample sample_health(uint16_t port, Clock::time_point since) {
  RawConn c(port, 3s);
  const RawResult r = c.request("GET", "/health", "");
  HealthSample h{seconds_since(since), {}};
  h.result = r.outcome == Outcome::response ? cat(r.status, " ", r.body.substr(0, 200))
                                            : std::string(outcome_name(r.outcome));
  return h;
}

TEST(Faults, PostgresHangUnderLoadLosesNothingAndRecovers) {
  const FaultRun setup("faults-pg-hang");
  ASSERT_TRUE(setup.error.empty()) << setup.error;
  const auto t0 = Clock::now();
  PrivatePostgres pg(setup.dir);
  ASSERT_TRUE(pg.error().empty()) << pg.error();
  // QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS: a request whose commit is late gets 503 outcome_unknown,
  // never Pistache's bare 408; commits stalled for 4 s make /health 503.
  const Env env = qf_e2e::isolated_env(pg.url(), {{"BATCH_MAX_DELAY_MS", "2"},
                                                  {"QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS", "5000"},
                                                  {"QUIZFLOW_HEALTH_MAX_COMMIT_STALL_MS", "4000"}});
  ServerProcess s(setup.bin, setup.dir, "pg-hang", env);
  ASSERT_EQ(s.start(), "");
  const Catalog catalog(setup.seed);
  ASSERT_EQ(catalog.create(s.port()), "");
  Load load("hang", setup.seed, catalog);
  load.start(s.port());
  std::this_thread::sleep_for(1500ms);

  const auto hang_begin = Clock::now();
  const int stopped = pg.signal_all(SIGSTOP);
  ASSERT_GT(stopped, 1) << "no PostgreSQL process to stop";
  std::vector<HealthSample> health;
  while (Clock::now() - hang_begin < 12s) {
    health.push_back(sample_health(s.port(), hang_begin));
    std::this_thread::sleep_for(1s);
  }
  pg.signal_all(SIGCONT);
  const auto hang_end = Clock::now();
  for (const auto& h : health)
    std::printf("HEALTH during the hang +%.1fs: %s\n", h.at_s, h.result.c_str());

  // Recovery: answers acknowledged again within a few seconds, /health 200 again.
  qf_e2e::poll_until(
      20s, [&] { return load.first_ack_after(hang_end).has_value(); }, 50ms);
  std::this_thread::sleep_for(2s);  // more load after the recovery
  load.join();
  const auto first_ack = load.first_ack_after(hang_end);
  const bool healthy_again = qf_e2e::poll_until(
      20s, [&] { return sample_health(s.port(), hang_end).result.rfind("200", 0) == 0; });
  EXPECT_TRUE(alive(s)) << "the server ended during or after the hang";
  ASSERT_TRUE(first_ack.has_value())
      << "nothing acknowledged after SIGCONT: " << load.results_between(hang_end, Clock::now());
  const double recovery_s = seconds_between(hang_end, *first_ack);
  EXPECT_LT(recovery_s, 15.0) << "first acknowledgement after SIGCONT";
  EXPECT_TRUE(healthy_again) << "GET /health not 200 within 20 s of SIGCONT";
  if (kAssertCommitStallHealth) {
    const bool stall_seen = std::any_of(health.begin(), health.end(), [](const HealthSample& h) {
      return h.result.rfind("503", 0) == 0 && h.result.find("commit") != std::string::npos;
    });
    EXPECT_TRUE(stall_seen) << "GET /health never reported the commit stall during the hang";
  }

  ASSERT_TRUE(load.resolve(s.port(), 60s)) << load.waiting() << " requests without a verdict";
  const Check c = verify(pg.url(), setup.dir, load, catalog);
  const std::string during = load.results_between(hang_begin, hang_end);
  std::printf("requests without a 200 from 2 s before the hang on (seconds after it began):\n%s",
              load.failures_between(hang_begin - 2s, Clock::now(), hang_begin).c_str());
  print_fault_line("pg_hang", 1, load, c, seconds_since(t0),
                   cat("hang_s=12 recovery_ms=", static_cast<int64_t>(recovery_s * 1000),
                       " during_hang={", during, "}"));
  EXPECT_TRUE(c.clean()) << c.describe();
  EXPECT_EQ(during.find("408="), std::string::npos)
      << "Pistache's bare 408 instead of the request deadline's 503: " << during;
  const auto problems = load.problems();
  EXPECT_TRUE(problems.empty()) << problems.size()
                                << " unexpected verdicts, first: " << problems.front();
  if (HasFailure()) print_log(s);
}

// ---------------------------------------------------------------------------------------------
// 3. PostgreSQL restart under load
// ---------------------------------------------------------------------------------------------

TEST(Faults, PostgresRestartUnderLoadLosesNothingAndRecovers) {
  const FaultRun setup("faults-pg-restart");
  ASSERT_TRUE(setup.error.empty()) << setup.error;
  const auto t0 = Clock::now();
  // Round i: "fast" (pg_ctl restart -m fast), "immediate" (restart -m immediate: crash recovery),
  // "outage" (stop -m immediate, 3 s without a server, start).
  const std::vector<std::string> modes = {"fast", "immediate", "outage"};
  const int rounds = long_mode() ? 9 : 3;
  PrivatePostgres pg(setup.dir);
  ASSERT_TRUE(pg.error().empty()) << pg.error();
  const Env env = qf_e2e::isolated_env(pg.url(), {{"BATCH_MAX_DELAY_MS", "2"}});
  ServerProcess s(setup.bin, setup.dir, "pg-restart", env);
  ASSERT_EQ(s.start(), "");
  const Catalog catalog(setup.seed);
  ASSERT_EQ(catalog.create(s.port()), "");
  Load load("rst", setup.seed, catalog);
  load.start(s.port());
  std::string recoveries;
  int64_t worst_recovery_ms = 0;
  for (int round = 0; round < rounds; ++round) {
    std::this_thread::sleep_for(1500ms);
    const std::string& mode = modes[static_cast<size_t>(round) % modes.size()];
    const auto begin = Clock::now();
    if (mode == "outage") {
      ASSERT_EQ(pg.stop("immediate"), "");
      std::this_thread::sleep_for(3s);
      ASSERT_EQ(pg.restart("fast"), "");  // starts the stopped server with its options
    } else {
      ASSERT_EQ(pg.restart(mode), "");
    }
    const auto back = Clock::now();
    const bool acked = qf_e2e::poll_until(
        20s, [&] { return load.first_ack_after(back).has_value(); }, 50ms);
    ASSERT_TRUE(acked) << "nothing acknowledged within 20 s of the restart (" << mode
                       << "): " << load.results_between(back, Clock::now());
    const auto first = *load.first_ack_after(back);
    const int64_t rec_ms = ms_between(back, first);
    worst_recovery_ms = std::max(worst_recovery_ms, rec_ms);
    recoveries +=
        cat(recoveries.empty() ? "" : ",", mode, ":", ms_between(begin, back), "+", rec_ms);
    std::printf(
        "pg restart %d (%s): down for %s ms, acknowledging again %s ms later; requests "
        "started meanwhile: %s\n",
        round, mode.c_str(), std::to_string(ms_between(begin, back)).c_str(),
        std::to_string(rec_ms).c_str(), load.results_between(begin, first).c_str());
  }
  std::this_thread::sleep_for(1000ms);
  load.join();
  EXPECT_TRUE(alive(s)) << "the server ended";
  EXPECT_LT(worst_recovery_ms, 15000);
  ASSERT_TRUE(load.resolve(s.port(), 60s)) << load.waiting() << " requests without a verdict";
  const Check c = verify(pg.url(), setup.dir, load, catalog);
  print_fault_line("pg_restart", rounds, load, c, seconds_since(t0),
                   "restart_ms+recovery_ms=" + recoveries);
  EXPECT_TRUE(c.clean()) << c.describe();
  const auto problems = load.problems();
  EXPECT_TRUE(problems.empty()) << problems.size()
                                << " unexpected verdicts, first: " << problems.front();
  if (HasFailure()) print_log(s);
}

// ---------------------------------------------------------------------------------------------
// 4. Kafka faults: HTTP in Kafka mode, answers consumed from quiz.answers
// ---------------------------------------------------------------------------------------------

TEST(Faults, KafkaFaultsUnderLoadLoseNothingAcknowledgedAndDeliverEveryNotification) {
  const FaultRun setup("faults-kafka");
  ASSERT_TRUE(setup.error.empty()) << setup.error;
  const auto t0 = Clock::now();
  ScratchDatabase db(setup.admin_url, setup.dir);
  ASSERT_TRUE(db.error().empty()) << db.error();
  MockKafkaProcess kafka(/*brokers=*/1, /*partitions=*/3);
  const Env env =
      qf_e2e::isolated_env(db.url(), {{"KAFKA_BROKERS", kafka.bootstrap()},
                                      {"QUIZFLOW_INGRESS_MODE", "kafka"},
                                      {"QUIZFLOW_CONSUME_ANSWERS", "true"},
                                      {"KAFKA_GROUP_ID", "faults-" + qf_e2e::random_hex(8)},
                                      {"KAFKA_SESSION_TIMEOUT_MS", "6000"},
                                      {"QUIZFLOW_HTTP_HEADER_TIMEOUT_MS", "4000"},
                                      {"QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS", "2500"},
                                      {"OUTBOX_RELAY_AFTER_MS", "1000"},
                                      {"BATCH_MAX_DELAY_MS", "2"}});
  ServerProcess s(setup.bin, setup.dir, "kafka-faults", env);
  ASSERT_EQ(s.start(), "");
  const Catalog catalog(setup.seed);
  ASSERT_EQ(catalog.create(s.port()), "");
  // Paced (10 answers per request, 25 ms between requests, ≤ ~1,000 answers/s): the mock
  // cluster keeps at most 100,000 messages per partition and deletes older ones, so a consumer
  // lagging further behind than that would find its next offsets gone (and skip them).
  Load load("kf", setup.seed, catalog, 10, 25ms);
  load.start(s.port());
  using K = MockKafkaProcess;
  std::string phases;
  const auto load_begin = Clock::now();
  // A phase injects its faults, lasts `length`, and ends with the errors it pushed and no request
  // has taken yet forgotten (an error left on the stack would hit whoever sends next, later).
  auto phase = [&](const std::string& name, auto&& inject, std::chrono::milliseconds length) {
    const auto begin = Clock::now();
    inject();
    std::this_thread::sleep_for(length);
    for (int api : {K::kApiProduce, K::kApiFetch, K::kApiOffsetCommit})
      kafka.clear_request_errors(api);
    const std::string results = load.results_between(begin, Clock::now());
    std::printf("kafka phase %s (+%.1fs): %s\n", name.c_str(), seconds_between(load_begin, begin),
                results.c_str());
    phases += cat(phases.empty() ? "" : "; ", name, ": ", results);
  };
  phase(
      "normal", [] {}, 1500ms);
  phase(
      "produce errors",
      [&] {
        kafka.push_request_errors(K::kApiProduce, 20, 6);   // NOT_LEADER_FOR_PARTITION
        kafka.push_request_errors(K::kApiProduce, 20, 7);   // REQUEST_TIMED_OUT
        kafka.push_request_errors(K::kApiProduce, 20, 19);  // NOT_ENOUGH_REPLICAS
      },
      2500ms);
  phase(
      "fetch and offset-commit errors",
      [&] {
        kafka.push_request_errors(K::kApiFetch, 30, 6);          // NOT_LEADER_FOR_PARTITION
        kafka.push_request_errors(K::kApiOffsetCommit, 10, 15);  // COORDINATOR_NOT_AVAILABLE
      },
      2500ms);
  phase(
      "dropped connections",
      [&] {
        kafka.push_request_errors(K::kApiProduce, 10, K::kErrTransport);
        kafka.push_request_errors(K::kApiFetch, 10, K::kErrTransport);
        for (int i = 0; i < 3; ++i) {
          kafka.drop_connections();
          std::this_thread::sleep_for(400ms);
        }
      },
      1500ms);
  phase(
      "brokers down", [&] { kafka.brokers_down(); }, 4000ms);
  // Recovery: the first answer acknowledged by a request sent after the brokers came back.
  const auto up = Clock::now();
  kafka.brokers_up();
  const bool recovered = qf_e2e::poll_until(
      30s, [&] { return load.first_ack_after(up).has_value(); }, 50ms);
  const int64_t recovery_ms = recovered ? ms_between(up, *load.first_ack_after(up)) : -1;
  std::this_thread::sleep_for(1s);
  std::printf("kafka brokers up (+%.1fs): acknowledging again after %s ms; %s\n",
              seconds_between(load_begin, up), std::to_string(recovery_ms).c_str(),
              load.results_between(up, Clock::now()).c_str());
  phases += cat("; brokers up: ", load.results_between(up, Clock::now()));
  load.join();
  EXPECT_TRUE(recovered) << "nothing acknowledged within 30 s of the brokers coming back";
  std::printf("requests without a 200 (seconds after the load began):\n%s",
              load.failures_between(load_begin, Clock::now(), load_begin).c_str());
  for (int api : {K::kApiProduce, K::kApiFetch, K::kApiOffsetCommit})
    kafka.clear_request_errors(api);
  EXPECT_TRUE(alive(s)) << "the server ended";
  ASSERT_TRUE(load.resolve(s.port(), 60s)) << load.waiting() << " requests without a verdict";

  // Acknowledged means "in Kafka": wait until the consumer stored all of it.
  const int64_t want = load.acknowledged();
  const bool all_stored = qf_e2e::poll_until(120s, [&] {
    return scalar(db.url(), "SELECT count(*) FROM answer_events", setup.dir) >= want;
  });
  EXPECT_TRUE(all_stored) << scalar(db.url(), "SELECT count(*) FROM answer_events", setup.dir)
                          << " of " << want << " acknowledged answers stored after 120 s";
  const Check c = verify(db.url(), setup.dir, load, catalog);
  EXPECT_TRUE(c.clean()) << c.describe();

  // Every notification was delivered: the outbox drains, and each counted answer's answer_result
  // is on quiz.notifications.
  const bool drained = qf_e2e::poll_until(
      60s, [&] { return scalar(db.url(), "SELECT count(*) FROM outbox", setup.dir) == 0; });
  EXPECT_TRUE(drained) << "the outbox still holds rows 60 s after the faults";
  const auto count_missing = [&](const std::vector<quizflow::testing::KafkaMessage>& msgs) {
    std::set<std::string> seen;
    for (const auto& m : msgs)
      seen.insert(quizflow::testing::json_string_field(m.value, "notification_id"));
    std::vector<std::string> out;
    for (const auto& id : c.counted_notification_ids)
      if (!seen.count(id)) out.push_back(id);
    return out;
  };
  // Everything on the topic now (the outbox is empty: every notification was acknowledged), read
  // up to each partition's end rather than until it goes quiet, so a slow fetch cannot cut it
  // short.
  const auto msgs = quizflow::testing::read_topic_to_end(kafka.bootstrap(), "quiz.notifications");
  const std::vector<std::string> missing = count_missing(msgs);
  EXPECT_TRUE(missing.empty()) << missing.size() << " of " << c.counted_notification_ids.size()
                               << " answer_result notifications of counted answers are not on "
                               << "quiz.notifications (" << msgs.size() << " messages read)";
  for (size_t k = 0; k < missing.size() && k < 5; ++k) {
    // What the topic and the database hold for the missing one's player and question.
    const std::vector<std::string> f = split(missing[k], ':');  // answer_result:quiz:user:event
    if (f.size() != 4) continue;
    std::printf("missing %s\n  notifications of user %s on the topic:\n", missing[k].c_str(),
                f[2].c_str());
    for (const auto& m : msgs)
      if (m.key == f[2] && m.value.find(f[1]) != std::string::npos)
        std::printf("    p%d@%lld %s\n", m.partition, static_cast<long long>(m.offset),
                    m.value.c_str());
    const std::string key_sql = cat("quiz_id = ", f[1], " AND user_id = ", f[2],
                                    " AND question_id = (SELECT question_id FROM answer_events "
                                    "WHERE quiz_id = ",
                                    f[1], " AND event_id = '", f[3], "')");
    std::printf("  answer_events of that question:\n%s  counted_answers:\n%s",
                qf_e2e::psql(db.url(),
                             "SELECT event_id, option_id, elapsed_ms, answered_at FROM "
                             "answer_events WHERE " +
                                 key_sql + " ORDER BY answered_at, event_id",
                             setup.dir)
                    .out.c_str(),
                qf_e2e::psql(db.url(), "SELECT * FROM counted_answers WHERE " + key_sql, setup.dir)
                    .out.c_str());
  }
  print_fault_line("kafka", 1, load, c, seconds_since(t0),
                   cat("recovery_ms=", recovery_ms,
                       " notifications_expected=", c.counted_notification_ids.size(),
                       " notifications_missing=", missing.size(), " phases={", phases, "}"));
  const auto problems = load.problems();
  EXPECT_TRUE(problems.empty()) << problems.size()
                                << " unexpected verdicts, first: " << problems.front();
  if (HasFailure()) print_log(s);
}

}  // namespace
