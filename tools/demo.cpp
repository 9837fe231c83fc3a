// quizflow-demo: drives a running quizflow server over HTTP the way a busy quiz bot would (many
// players answering at once, each on its own keep-alive connection), then checks what the server
// answered and reports latency, the leaderboard and the pipeline's stage counters.
//
// Exit status: 0 when every valid answer was accepted, every re-send was a duplicate, every
// invalid answer was rejected with the expected code, the leaderboard holds every player and
// matches the standings computed here from what was sent, and after POST /close the quiz is
// finalized with the rewards of its tiers; 1 otherwise; 2 on bad usage.
#include <rapidjson/document.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <latch>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tools/api_json.h"
#include "tools/http_client.h"
#include "tools/timestamps.h"

namespace {

using Answer = quizflow::tools::AnswerBody;
using quizflow::tools::answer_json;
using quizflow::tools::HttpClient;
using quizflow::tools::HttpResponse;
using quizflow::tools::rfc3339;
using quizflow::tools::wall_ms;
using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    R"(usage: quizflow-demo --url http://HOST:PORT [--players N] [--questions N] [--quiz-id ID]
                     [--token TOKEN] [--seed S]

Creates a quiz, lets N players answer every question at once (one keep-alive connection per
player), re-sends one answer per player (expects "duplicate"), sends a few invalid answers
(expects "rejected"), then prints throughput, POST latency, the top 10 and the stage counters.

  --url        the server, e.g. http://127.0.0.1:8000 (required)
  --players    concurrent players, 1-10000 (default 100)
  --questions  questions in the quiz, 1-500 (default 10)
  --quiz-id    quiz id (default: derived from the current time, so reruns do not clash)
  --token      bearer token for the write endpoints (QUIZFLOW_API_TOKEN of the server)
  --seed       random seed (default: random; printed so a run can be repeated)
A flag given twice: the last one wins. Exit status 0 only if every check passed.
)";

constexpr int kOptions = 4;
constexpr int64_t kPoints = 1000;
constexpr int64_t kTimeLimitMs = 20000;
constexpr int kMaxProblems = 40;

struct Options {
  std::string url;
  int players = 100;
  int questions = 10;
  std::optional<int64_t> quiz_id;
  std::string token;
  std::optional<uint64_t> seed;
};

template <typename T>
bool parse_number(const std::string& s, T& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  if constexpr (std::is_signed_v<T>) {
    const long long v = std::strtoll(s.c_str(), &end, 10);
    out = static_cast<T>(v);
  } else {
    if (s[0] == '-') return false;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    out = static_cast<T>(v);
  }
  return errno == 0 && end == s.c_str() + s.size();
}

// Returns nullopt after printing a message when the arguments are unusable.
std::optional<Options> parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    std::string value;
    const size_t eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      std::fprintf(stderr, "quizflow-demo: %s needs a value\n%s", a.c_str(), kUsage);
      return std::nullopt;
    }
    bool ok = true;
    if (a == "--url") {
      o.url = value;
    } else if (a == "--players") {
      ok = parse_number(value, o.players) && o.players >= 1 && o.players <= 10000;
    } else if (a == "--questions") {
      ok = parse_number(value, o.questions) && o.questions >= 1 && o.questions <= 500;
    } else if (a == "--quiz-id") {
      int64_t v = 0;
      ok = parse_number(value, v) && v >= 1;
      o.quiz_id = v;
    } else if (a == "--token") {
      o.token = value;
    } else if (a == "--seed") {
      uint64_t v = 0;
      ok = parse_number(value, v);
      o.seed = v;
    } else {
      std::fprintf(stderr, "quizflow-demo: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return std::nullopt;
    }
    if (!ok) {
      std::fprintf(stderr, "quizflow-demo: bad value '%s' for %s\n%s", value.c_str(), a.c_str(),
                   kUsage);
      return std::nullopt;
    }
  }
  if (o.url.empty()) {
    std::fprintf(stderr, "quizflow-demo: --url is required\n%s", kUsage);
    return std::nullopt;
  }
  return o;
}

// Collected across threads: what went wrong, in words (bounded).
class Problems {
 public:
  void add(std::string what) {
    std::lock_guard lock(mu_);
    ++count_;
    if (list_.size() < kMaxProblems) list_.push_back(std::move(what));
  }
  int64_t count() const {
    std::lock_guard lock(mu_);
    return count_;
  }
  void print() const {
    std::lock_guard lock(mu_);
    for (const auto& p : list_) std::printf("  - %s\n", p.c_str());
    if (count_ > static_cast<int64_t>(list_.size()))
      std::printf("  … and %" PRId64 " more\n", count_ - static_cast<int64_t>(list_.size()));
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> list_;  // guarded by mu_
  int64_t count_ = 0;              // guarded by mu_
};

int correct_option(int question_id) { return (question_id * 7 + 3) % kOptions; }

int64_t points_for(const Answer& a) {
  if (a.option_id != correct_option(static_cast<int>(a.question_id))) return 0;
  return kPoints - (kPoints * a.elapsed_ms) / (2 * kTimeLimitMs);
}

std::string quiz_json(int64_t quiz_id, int questions, int64_t now) {
  std::vector<quizflow::tools::QuestionSpec> qs;
  for (int q = 1; q <= questions; ++q)
    qs.push_back({q, kOptions, correct_option(q), kPoints, kTimeLimitMs});
  return quizflow::tools::quiz_json(quiz_id, "quizflow demo " + std::to_string(quiz_id),
                                    now - 60'000, now + 3'600'000, qs,
                                    {{1, 1, "gold badge"}, {2, 3, "silver badge"}});
}

// One answer's fate as the server reported it.
struct Outcome {
  std::string status;  // "accepted", "duplicate", "rejected", or "" when no usable answer came
  std::string code;
  std::string detail;  // what went wrong when status is ""
};

Outcome single_outcome(const HttpResponse& r, const std::string& event_id) {
  Outcome o;
  if (r.status != 200) {
    o.detail = "HTTP " + std::to_string(r.status) + ": " + r.body.substr(0, 300);
    return o;
  }
  rapidjson::Document d;
  d.Parse(r.body.c_str(), r.body.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("results") || !d["results"].IsArray() ||
      d["results"].Size() != 1 || !d["results"][0].IsObject()) {
    o.detail = "unexpected body: " + r.body.substr(0, 300);
    return o;
  }
  const auto& it = d["results"][0];
  if (!it.HasMember("status") || !it["status"].IsString()) {
    o.detail = "result without status: " + r.body.substr(0, 300);
    return o;
  }
  if (it.HasMember("event_id") && it["event_id"].IsString() &&
      it["event_id"].GetString() != event_id) {
    o.detail =
        "result for event_id " + std::string(it["event_id"].GetString()) + ", sent " + event_id;
    return o;
  }
  o.status = it["status"].GetString();
  if (it.HasMember("code") && it["code"].IsString()) o.code = it["code"].GetString();
  return o;
}

// Per-thread figures, merged at the end.
struct Tally {
  int64_t posts = 0;
  int64_t valid_sent = 0, accepted = 0;
  int64_t resent = 0, resent_duplicate = 0;
  int64_t retries_503 = 0;
  std::vector<double> latency_ms;
  std::vector<Answer> counted;  // the valid answers, for the expected standings
};

class Poster {
 public:
  Poster(const quizflow::tools::Url& u, const std::string& token, Tally& t)
      : client_(u.host, u.port), tally_(t) {
    if (!token.empty()) headers_.emplace_back("Authorization", "Bearer " + token);
  }

  // Opens the keep-alive connection (GET /health), so that connection set-up is not counted
  // in the POST latencies. Returns an error text, or "" on success.
  std::string warm_up() {
    try {
      const HttpResponse r = client_.request("GET", "/health");
      return r.status == 200 ? "" : "GET /health: HTTP " + std::to_string(r.status);
    } catch (const std::exception& e) {
      return e.what();
    }
  }

  // POSTs one answer; retries a 503 (overload) a few times, as a polite bot would.
  HttpResponse post(const std::string& body) {
    for (int attempt = 0;; ++attempt) {
      const auto t0 = Clock::now();
      HttpResponse r = client_.request("POST", "/v1/answers", body, headers_);
      tally_.latency_ms.push_back(
          std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      ++tally_.posts;
      if (r.status != 503 || attempt >= 5) return r;
      ++tally_.retries_503;
      int wait_s = 1;
      if (const std::string* ra = r.header("retry-after"))
        wait_s = std::clamp(std::atoi(ra->c_str()), 0, 5);
      std::this_thread::sleep_for(std::chrono::seconds(wait_s));
    }
  }

 private:
  HttpClient client_;
  HttpClient::Headers headers_;
  Tally& tally_;
};

void run_player(const quizflow::tools::Url& url, const Options& o, int64_t quiz_id, int64_t user,
                uint64_t seed, std::latch& start, Tally& t, Problems& problems) {
  std::mt19937_64 rng(seed ^ (static_cast<uint64_t>(user) * 0x9E3779B97F4A7C15ULL));
  Poster poster(url, o.token, t);
  std::vector<std::string> bodies;
  std::vector<std::string> ids;
  if (std::string err = poster.warm_up(); !err.empty())
    problems.add("player " + std::to_string(user) + " before the start: " + err);
  start.arrive_and_wait();
  for (int q = 1; q <= o.questions; ++q) {
    Answer a;
    a.quiz_id = quiz_id;
    a.user_id = user;
    a.question_id = q;
    a.option_id = static_cast<int64_t>(rng() % kOptions);
    a.elapsed_ms = static_cast<int64_t>(rng() % (kTimeLimitMs + 1));
    a.answered_at = rfc3339(wall_ms());
    a.event_id =
        "demo-" + std::to_string(quiz_id) + "-" + std::to_string(user) + "-" + std::to_string(q);
    const std::string body = answer_json(a);
    ++t.valid_sent;
    t.counted.push_back(a);
    bodies.push_back(body);
    ids.push_back(a.event_id);
    try {
      const Outcome out = single_outcome(poster.post(body), a.event_id);
      if (out.status == "accepted")
        ++t.accepted;
      else
        problems.add(a.event_id + ": expected accepted, got " +
                     (out.status.empty() ? out.detail : out.status + " " + out.code));
    } catch (const std::exception& e) {
      problems.add(a.event_id + ": " + e.what());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 31));
  }
  const size_t k = static_cast<size_t>(rng() % bodies.size());
  ++t.resent;
  try {
    const Outcome out = single_outcome(poster.post(bodies[k]), ids[k]);
    if (out.status == "duplicate")
      ++t.resent_duplicate;
    else
      problems.add("re-sent " + ids[k] + ": expected duplicate, got " +
                   (out.status.empty() ? out.detail : out.status + " " + out.code));
  } catch (const std::exception& e) {
    problems.add("re-sent " + ids[k] + ": " + e.what());
  }
}

struct Invalid {
  Answer answer;
  bool extra_field = false;
  std::string expected_code;
  std::string what;
};

std::vector<Invalid> invalid_answers(int64_t quiz_id, const Options& o, int64_t now) {
  auto base = [&](int k) {
    Answer a;
    a.event_id = "demo-" + std::to_string(quiz_id) + "-invalid-" + std::to_string(k);
    a.quiz_id = quiz_id;
    a.user_id = o.players + 1;
    a.question_id = 1;
    a.option_id = 0;
    a.answered_at = rfc3339(now);
    a.elapsed_ms = 1000;
    return a;
  };
  std::vector<Invalid> v;
  Invalid x;
  x = {base(1), false, "unknown_question", "question that does not exist"};
  x.answer.question_id = o.questions + 1000;
  v.push_back(x);
  x = {base(2), false, "option_out_of_range", "option 4 of 4"};
  x.answer.option_id = kOptions;
  v.push_back(x);
  x = {base(3), false, "elapsed_out_of_range", "elapsed beyond the time limit"};
  x.answer.elapsed_ms = kTimeLimitMs + 1;
  v.push_back(x);
  x = {base(4), false, "quiz_not_open", "answered before the quiz opened"};
  x.answer.answered_at = rfc3339(now - 3'600'000);
  v.push_back(x);
  x = {base(5), false, "unknown_quiz", "quiz that does not exist"};
  x.answer.quiz_id = INT64_MAX;
  v.push_back(x);
  x = {base(6), false, "schema", "user_id 0"};
  x.answer.user_id = 0;
  v.push_back(x);
  x = {base(7), true, "schema", "unknown field"};
  v.push_back(x);
  return v;
}

struct Standing {
  int64_t user_id = 0, score = 0, correct = 0, time_ms = 0;
};

bool ranks_before(const Standing& a, const Standing& b) {
  if (a.score != b.score) return a.score > b.score;
  if (a.correct != b.correct) return a.correct > b.correct;
  if (a.time_ms != b.time_ms) return a.time_ms < b.time_ms;
  return a.user_id < b.user_id;
}

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

int64_t get_int(const rapidjson::Value& obj, const char* name) {
  if (!obj.IsObject()) return 0;
  auto it = obj.FindMember(name);
  return it != obj.MemberEnd() && it->value.IsInt64() ? it->value.GetInt64() : 0;
}

struct StageRow {
  std::string name;
  int64_t processed = 0, rejected = 0, failed = 0;
};

struct Stats {
  bool ok = false;
  std::vector<StageRow> stages;
  int64_t committed = 0, rows = 0;
};

Stats fetch_stats(HttpClient& c, std::string& error) {
  Stats s;
  try {
    const HttpResponse r = c.request("GET", "/monitoring/stats");
    if (r.status != 200) {
      error = "GET /monitoring/stats: HTTP " + std::to_string(r.status);
      return s;
    }
    rapidjson::Document d;
    d.Parse(r.body.c_str(), r.body.size());
    if (d.HasParseError() || !d.IsObject() || !d.HasMember("stages") || !d["stages"].IsObject()) {
      error = "GET /monitoring/stats: unexpected body " + r.body.substr(0, 200);
      return s;
    }
    for (auto m = d["stages"].MemberBegin(); m != d["stages"].MemberEnd(); ++m)
      s.stages.push_back({m->name.GetString(), get_int(m->value, "processed"),
                          get_int(m->value, "rejected"), get_int(m->value, "failed")});
    if (d.HasMember("batches")) {
      s.committed = get_int(d["batches"], "committed");
      s.rows = get_int(d["batches"], "rows");
    }
    s.ok = true;
  } catch (const std::exception& e) {
    error = e.what();
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse_args(argc, argv);
  if (!parsed) return 2;
  const Options o = *parsed;
  quizflow::tools::Url url;
  try {
    url = quizflow::tools::parse_url(o.url);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quizflow-demo: %s\n", e.what());
    return 2;
  }
  const int64_t start_ms = wall_ms();
  const int64_t quiz_id =
      o.quiz_id.value_or(std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count());
  const uint64_t seed = o.seed.value_or(std::random_device{}() ^ static_cast<uint64_t>(start_ms));
  HttpClient::Headers auth;
  if (!o.token.empty()) auth.emplace_back("Authorization", "Bearer " + o.token);

  std::printf("quizflow-demo: %s:%u, quiz %" PRId64 ", %d players x %d questions, seed %" PRIu64
              "\n",
              url.host.c_str(), url.port, quiz_id, o.players, o.questions, seed);
  HttpClient main_client(url.host, url.port);
  try {
    const HttpResponse r =
        main_client.request("POST", "/v1/quizzes", quiz_json(quiz_id, o.questions, start_ms), auth);
    if (r.status != 201 && r.status != 200) {
      std::printf("FAILED: creating quiz %" PRId64 ": HTTP %d %s\n", quiz_id, r.status,
                  r.body.c_str());
      return 1;
    }
    std::printf("quiz %" PRId64 " created (HTTP %d)\n", quiz_id, r.status);
  } catch (const std::exception& e) {
    std::printf("FAILED: cannot reach the server: %s\n", e.what());
    return 1;
  }
  std::string stats_error;
  const Stats before = fetch_stats(main_client, stats_error);

  // ---- the run: N players at once, plus a few invalid answers beside them ----
  Problems problems;
  std::vector<Tally> tallies(static_cast<size_t>(o.players));
  std::latch start(o.players + 1);
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(o.players));
  for (int i = 0; i < o.players; ++i)
    threads.emplace_back(run_player, std::cref(url), std::cref(o), quiz_id, int64_t{i + 1}, seed,
                         std::ref(start), std::ref(tallies[static_cast<size_t>(i)]),
                         std::ref(problems));
  start.arrive_and_wait();
  const auto t0 = Clock::now();

  Tally invalid_tally;
  const auto invalid = invalid_answers(quiz_id, o, wall_ms());
  int64_t invalid_rejected = 0;
  {
    Poster poster(url, o.token, invalid_tally);
    for (const auto& x : invalid) {
      try {
        const Outcome out =
            single_outcome(poster.post(answer_json(x.answer, x.extra_field)), x.answer.event_id);
        if (out.status == "rejected" && out.code == x.expected_code)
          ++invalid_rejected;
        else
          problems.add("invalid answer (" + x.what + "): expected rejected " + x.expected_code +
                       ", got " + (out.status.empty() ? out.detail : out.status + " " + out.code));
      } catch (const std::exception& e) {
        problems.add("invalid answer (" + x.what + "): " + e.what());
      }
    }
  }
  for (auto& t : threads) t.join();
  const double wall_s = std::chrono::duration<double>(Clock::now() - t0).count();

  // ---- figures ----
  Tally all;
  std::vector<Standing> expected(static_cast<size_t>(o.players));
  for (size_t i = 0; i < tallies.size(); ++i) {
    const Tally& t = tallies[i];
    all.posts += t.posts;
    all.valid_sent += t.valid_sent;
    all.accepted += t.accepted;
    all.resent += t.resent;
    all.resent_duplicate += t.resent_duplicate;
    all.retries_503 += t.retries_503;
    all.latency_ms.insert(all.latency_ms.end(), t.latency_ms.begin(), t.latency_ms.end());
    Standing& s = expected[i];
    s.user_id = static_cast<int64_t>(i + 1);
    for (const Answer& a : t.counted) {
      const int64_t p = points_for(a);
      s.score += p;
      s.correct += a.option_id == correct_option(static_cast<int>(a.question_id)) ? 1 : 0;
      s.time_ms += a.elapsed_ms;
    }
  }
  all.posts += invalid_tally.posts;
  all.retries_503 += invalid_tally.retries_503;
  all.latency_ms.insert(all.latency_ms.end(), invalid_tally.latency_ms.begin(),
                        invalid_tally.latency_ms.end());
  std::sort(all.latency_ms.begin(), all.latency_ms.end());
  std::sort(expected.begin(), expected.end(), ranks_before);
  const int64_t invalid_sent = static_cast<int64_t>(invalid.size());
  const int64_t sent = all.valid_sent + all.resent + invalid_sent;

  std::printf("\n%-24s %" PRId64 "  (%" PRId64 " valid, %" PRId64 " re-sent, %" PRId64
              " invalid)\n",
              "answers sent", sent, all.valid_sent, all.resent, invalid_sent);
  std::printf("%-24s %" PRId64 " of %" PRId64 " valid\n", "accepted", all.accepted, all.valid_sent);
  std::printf("%-24s %" PRId64 " of %" PRId64 " re-sent\n", "duplicate", all.resent_duplicate,
              all.resent);
  std::printf("%-24s %" PRId64 " of %" PRId64 " invalid (with the expected code)\n", "rejected",
              invalid_rejected, invalid_sent);
  if (all.retries_503 > 0) std::printf("%-24s %" PRId64 "\n", "503 retries", all.retries_503);
  std::printf("%-24s %.3f s\n", "wall time", wall_s);
  std::printf("%-24s %.1f\n", "answers/s",
              wall_s > 0 ? static_cast<double>(all.posts) / wall_s : 0);
  std::printf("%-24s p50 %.2f   p99 %.2f   max %.2f   (%zu POSTs)\n", "POST->response ms",
              percentile(all.latency_ms, 50), percentile(all.latency_ms, 99),
              all.latency_ms.empty() ? 0.0 : all.latency_ms.back(), all.latency_ms.size());

  // ---- leaderboard ----
  bool leaderboard_ok = false;
  int64_t total = -1;
  std::vector<Standing> top;
  try {
    const std::string path = "/v1/quizzes/" + std::to_string(quiz_id) + "/leaderboard?limit=10";
    const HttpResponse r = main_client.request("GET", path);
    rapidjson::Document d;
    d.Parse(r.body.c_str(), r.body.size());
    if (r.status != 200 || d.HasParseError() || !d.IsObject() || !d.HasMember("entries") ||
        !d["entries"].IsArray()) {
      problems.add("GET " + path + ": HTTP " + std::to_string(r.status) + " " +
                   r.body.substr(0, 300));
    } else {
      total = get_int(d, "total");
      std::printf("\nleaderboard (top 10 of %" PRId64 ")\n", total);
      std::printf("  %4s  %8s  %8s  %7s  %9s\n", "rank", "user", "score", "correct", "time_ms");
      for (const auto& e : d["entries"].GetArray()) {
        Standing s{get_int(e, "user_id"), get_int(e, "score"), get_int(e, "correct"),
                   get_int(e, "time_ms")};
        std::printf("  %4" PRId64 "  %8" PRId64 "  %8" PRId64 "  %7" PRId64 "  %9" PRId64 "\n",
                    get_int(e, "rank"), s.user_id, s.score, s.correct, s.time_ms);
        if (get_int(e, "rank") != static_cast<int64_t>(top.size() + 1))
          problems.add("leaderboard entry " + std::to_string(top.size() + 1) + " has rank " +
                       std::to_string(get_int(e, "rank")));
        top.push_back(s);
      }
      leaderboard_ok = true;
    }
  } catch (const std::exception& e) {
    problems.add(std::string("leaderboard: ") + e.what());
  }
  if (leaderboard_ok) {
    if (total != o.players)
      problems.add("leaderboard total is " + std::to_string(total) + ", expected " +
                   std::to_string(o.players));
    const size_t n = std::min<size_t>(10, expected.size());
    bool same = top.size() == n;
    for (size_t i = 0; same && i < n; ++i) {
      const Standing &a = top[i], &b = expected[i];
      same = a.user_id == b.user_id && a.score == b.score && a.correct == b.correct &&
             a.time_ms == b.time_ms;
    }
    if (same) {
      std::printf("  (matches the standings computed from the answers sent)\n");
    } else {
      problems.add("the top " + std::to_string(n) +
                   " differ from the standings computed from the answers sent");
      std::printf("  expected from the answers sent:\n");
      for (size_t i = 0; i < n; ++i)
        std::printf("  %4zu  %8" PRId64 "  %8" PRId64 "  %7" PRId64 "  %9" PRId64 "\n", i + 1,
                    expected[i].user_id, expected[i].score, expected[i].correct,
                    expected[i].time_ms);
    }
  }

  // ---- the quiz's end: close, finalization, rewards ----
  bool rewards_ok = false;
  try {
    const std::string base = "/v1/quizzes/" + std::to_string(quiz_id);
    const HttpResponse c = main_client.request("POST", base + "/close", "", auth);
    if (c.status != 202) throw std::runtime_error("POST close: HTTP " + std::to_string(c.status));
    const auto t0 = std::chrono::steady_clock::now();
    std::string state;
    while (state != "finalized" &&
           std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10)) {
      const HttpResponse q = main_client.request("GET", base);
      rapidjson::Document d;
      d.Parse(q.body.c_str(), q.body.size());
      if (q.status == 200 && d.IsObject() && d.HasMember("state") && d["state"].IsString())
        state = d["state"].GetString();
      if (state != "finalized") std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (state != "finalized") throw std::runtime_error("not finalized 10 s after POST close");
    const HttpResponse r = main_client.request("GET", base + "/rewards");
    rapidjson::Document d;
    d.Parse(r.body.c_str(), r.body.size());
    if (r.status != 200 || !d.IsObject() || !d.HasMember("rewards") || !d["rewards"].IsArray())
      throw std::runtime_error("GET rewards: HTTP " + std::to_string(r.status));
    std::printf("\nclosed and finalized in %.0f ms; rewards (tiers: 1 gold, 2-3 silver)\n", ms);
    std::vector<int64_t> rewarded;
    for (const auto& e : d["rewards"].GetArray()) {
      std::printf("  rank %" PRId64 "  user %" PRId64 "  %s\n", get_int(e, "rank"),
                  get_int(e, "user_id"), e["reward"].GetString());
      rewarded.push_back(get_int(e, "user_id"));
    }
    // The tiers applied to the final standings: the top 3 of the standings computed here.
    std::vector<int64_t> want;
    for (size_t i = 0; i < std::min<size_t>(3, expected.size()); ++i)
      want.push_back(expected[i].user_id);
    rewards_ok = rewarded == want;
    if (!rewards_ok) problems.add("the rewards do not go to the top 3 of the standings");
  } catch (const std::exception& e) {
    problems.add(std::string("finalization: ") + e.what());
  }

  // ---- stage counters (difference of two snapshots: this run only) ----
  const Stats after = fetch_stats(main_client, stats_error);
  if (before.ok && after.ok) {
    std::printf("\nstages (this run: /monitoring/stats after minus before)\n");
    std::printf("  %-10s  %10s  %10s  %8s\n", "stage", "processed", "rejected", "failed");
    for (const StageRow& a : after.stages) {
      StageRow b;
      for (const StageRow& x : before.stages)
        if (x.name == a.name) b = x;
      std::printf("  %-10s  %10" PRId64 "  %10" PRId64 "  %8" PRId64 "\n", a.name.c_str(),
                  a.processed - b.processed, a.rejected - b.rejected, a.failed - b.failed);
    }
    const int64_t committed = after.committed - before.committed;
    const int64_t rows = after.rows - before.rows;
    std::printf("  %-22s %" PRId64 "\n", "batches committed", committed);
    std::printf("  %-22s %" PRId64 "\n", "batch rows", rows);
    std::printf(
        "  %-22s %.3f  (%" PRId64 " commits / %" PRId64 " accepted answers)\n",
        "commits per answer",
        all.accepted > 0 ? static_cast<double>(committed) / static_cast<double>(all.accepted) : 0.0,
        committed, all.accepted);
  } else {
    std::printf("\nstages: unavailable (%s)\n", stats_error.c_str());
  }

  const bool ok = problems.count() == 0 && all.accepted == all.valid_sent &&
                  all.resent_duplicate == all.resent && invalid_rejected == invalid_sent &&
                  leaderboard_ok && total == o.players && rewards_ok;
  if (ok) {
    std::printf("\nOK: every check passed\n");
    return 0;
  }
  std::printf("\nFAILED: %" PRId64 " problem(s):\n", problems.count());
  problems.print();
  return 1;
}
