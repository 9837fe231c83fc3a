// qf-http-load: the HTTP load generator of the benchmark harness. Drives POST /v1/answers of a
// running quizflow (or of qf-bare-pistache, the Pistache ceiling) over keep-alive connections
// from non-blocking sockets on epoll loops, and reports throughput, latency, errors and (quizflow
// only) how long a committed answer takes to show in the player's standing.
//
// Modes:
//   closed  N players, one connection each; every player answers, waits for the response, thinks
//           a random time in [think-min, think-max] ms, answers the next question, …
//   open    a fixed offered rate R of single-answer POSTs over C connections; send times are
//           scheduled in advance and latency counts from the scheduled time (no coordinated
//           omission: a request that waits for a free connection waits on the clock)
//   batch   C connections, each POSTing {"answers":[K answers]} back to back (closed loop)
//
// Every answer is valid and unique (its own event_id, a (user, question) pair answered once,
// answered_at = now), so quizflow accepts all of them and each one counts. Per connection the
// requests are sequential and each simulated user belongs to one connection, so after each
// response the exact standing the user must reach is known: the visibility sampler polls
// GET /v1/quizzes/{id}/players/{user} for a sample of answers until it shows that standing.
//
// Output: RESULT lines on stdout (see kUsage), a human summary on stderr.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <rapidjson/document.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tools/http_client.h"
#include "tools/timestamps.h"

namespace {

using quizflow::tools::HttpClient;
using quizflow::tools::HttpResponse;

constexpr const char* kUsage = R"(usage: qf-http-load --mode closed|open|batch [options]

  --url URL             server, http://HOST:PORT (default http://127.0.0.1:8000)
  --target T            quizflow (default): create a quiz first, check visibility;
                        bare: qf-bare-pistache, no quiz, no visibility
  --mode M              closed (default) | open | batch
  --duration S          seconds of load (default 10); in-flight requests are then drained
  --case NAME           case name in the RESULT lines (default derived from target and mode)
  --seed N              random seed (default random; printed)
  --smoke               a 2-second tiny run for CI (small counts); exit 1 on any error
 closed:
  --players N           players, one connection each (default 100)
  --think-min-ms A      think time between a response and the next answer (default 1000)
  --think-max-ms B      (default 3000); each think time is uniform in [A, B]
 open:
  --rate R              offered single-answer POSTs per second (default 1000)
  --connections C       connections (default 64 for open, 4 for batch)
 batch:
  --batch-size K        answers per POST (default 100)
 other:
  --threads T           client event loops (default 1)
  --questions Q         questions in the created quiz, 1-500 (default 500)
  --quiz-id ID          quiz id (default: derived from the clock)
  --quizzes N           spread the connections over N quizzes, ids ID..ID+N-1 (default 1):
                        quiz rooms running at once; one quiz commits one batch at a time
  --token TOKEN         bearer token for POSTs (QUIZFLOW_API_TOKEN)
  --timeout-ms MS       a request without a response after MS is a connection error (30000)
  --visibility-interval-ms MS
                        one visibility sample per MS of run time (default 100; 0 disables)

Seed scenario (spec §1: 100 concurrent players of a chat quiz):
  qf-http-load --url http://127.0.0.1:8000 --mode closed --players 100 \
               --think-min-ms 1000 --think-max-ms 3000 --duration 60 --case seed_100p

stdout, one line per figure:
  RESULT bench=http case=<case> metric=<m> value=<v> unit=<u>
  metrics: throughput_rps (HTTP 200 responses/s), answers_per_s (accepted answers/s),
  p50_ms p95_ms p99_ms max_ms (POST until complete response; open mode: from the scheduled
  send time), errors (non-200 responses + connection errors/timeouts + answers not accepted),
  visibility_p50_ms visibility_p99_ms (quizflow: response until the standing shows the answer).
Exit status: 0 done; 1 no request succeeded (or --smoke and an error); 2 bad usage; 3 set-up
failed (server unreachable, quiz not created).
)";

constexpr int kOptions = 4;
constexpr int64_t kPoints = 1000;
constexpr int64_t kNs = 1'000'000'000;
constexpr int64_t kVisibilityGiveUpNs = 30 * kNs;

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * kNs + ts.tv_nsec;
}

using quizflow::tools::rfc3339;
using quizflow::tools::wall_ms;

// ---------------------------------------------------------------- options

enum class Mode { closed, open, batch };
enum class Target { quizflow, bare };

struct Options {
  std::string url = "http://127.0.0.1:8000";
  Target target = Target::quizflow;
  Mode mode = Mode::closed;
  double duration_s = 10;
  std::string case_name;
  std::optional<uint64_t> seed;
  bool smoke = false;
  int players = 100;
  int64_t think_min_ms = 1000;
  int64_t think_max_ms = 3000;
  double rate = 1000;
  int connections = 0;  // 0: the mode's default
  int batch_size = 100;
  int threads = 1;
  int questions = 500;
  int quizzes = 1;
  std::optional<int64_t> quiz_id;
  std::string token;
  int64_t timeout_ms = 30000;
  int64_t visibility_interval_ms = 100;
};

template <typename T>
bool parse_num(const std::string& s, T& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  if constexpr (std::is_floating_point_v<T>) {
    out = static_cast<T>(std::strtod(s.c_str(), &end));
  } else if constexpr (std::is_signed_v<T>) {
    out = static_cast<T>(std::strtoll(s.c_str(), &end, 10));
  } else {
    if (s[0] == '-') return false;
    out = static_cast<T>(std::strtoull(s.c_str(), &end, 10));
  }
  return errno == 0 && end == s.c_str() + s.size();
}

std::optional<Options> parse_args(int argc, char** argv) {
  Options o;
  bool players_set = false, think_set = false, rate_set = false, conns_set = false,
       batch_set = false, duration_set = false;
  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "qf-http-load: %s\n%s", msg.c_str(), kUsage);
    return std::nullopt;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (a == "--smoke") {
      o.smoke = true;
      continue;
    }
    std::string v;
    const size_t eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < argc) {
      v = argv[++i];
    } else {
      return fail(a + " needs a value");
    }
    bool ok = true;
    if (a == "--url") {
      o.url = v;
    } else if (a == "--target") {
      ok = v == "quizflow" || v == "bare";
      o.target = v == "bare" ? Target::bare : Target::quizflow;
    } else if (a == "--mode") {
      ok = v == "closed" || v == "open" || v == "batch";
      o.mode = v == "open" ? Mode::open : v == "batch" ? Mode::batch : Mode::closed;
    } else if (a == "--duration") {
      ok = parse_num(v, o.duration_s) && o.duration_s > 0 && o.duration_s <= 86400;
      duration_set = true;
    } else if (a == "--case") {
      ok = !v.empty() && v.find_first_of(" \t=") == std::string::npos;
      o.case_name = v;
    } else if (a == "--seed") {
      uint64_t s = 0;
      ok = parse_num(v, s);
      o.seed = s;
    } else if (a == "--players") {
      ok = parse_num(v, o.players) && o.players >= 1 && o.players <= 100000;
      players_set = true;
    } else if (a == "--think-min-ms") {
      ok = parse_num(v, o.think_min_ms) && o.think_min_ms >= 0 && o.think_min_ms <= 600000;
      think_set = true;
    } else if (a == "--think-max-ms") {
      ok = parse_num(v, o.think_max_ms) && o.think_max_ms >= 0 && o.think_max_ms <= 600000;
      think_set = true;
    } else if (a == "--rate") {
      ok = parse_num(v, o.rate) && o.rate > 0 && o.rate <= 10'000'000;
      rate_set = true;
    } else if (a == "--connections") {
      ok = parse_num(v, o.connections) && o.connections >= 1 && o.connections <= 100000;
      conns_set = true;
    } else if (a == "--batch-size") {
      ok = parse_num(v, o.batch_size) && o.batch_size >= 1 && o.batch_size <= 100000;
      batch_set = true;
    } else if (a == "--threads") {
      ok = parse_num(v, o.threads) && o.threads >= 1 && o.threads <= 64;
    } else if (a == "--questions") {
      ok = parse_num(v, o.questions) && o.questions >= 1 && o.questions <= 500;
    } else if (a == "--quizzes") {
      ok = parse_num(v, o.quizzes) && o.quizzes >= 1 && o.quizzes <= 1000;
    } else if (a == "--quiz-id") {
      int64_t q = 0;
      ok = parse_num(v, q) && q >= 1;
      o.quiz_id = q;
    } else if (a == "--token") {
      o.token = v;
    } else if (a == "--timeout-ms") {
      ok = parse_num(v, o.timeout_ms) && o.timeout_ms >= 1;
    } else if (a == "--visibility-interval-ms") {
      ok = parse_num(v, o.visibility_interval_ms) && o.visibility_interval_ms >= 0;
    } else {
      return fail("unknown argument '" + a + "'");
    }
    if (!ok) return fail("bad value '" + v + "' for " + a);
  }
  if (o.think_min_ms > o.think_max_ms) return fail("--think-min-ms is above --think-max-ms");
  if (o.smoke) {
    if (!duration_set) o.duration_s = 2;
    if (!players_set) o.players = 4;
    if (!think_set) o.think_min_ms = 10, o.think_max_ms = 50;
    if (!rate_set) o.rate = 200;
    if (!conns_set) o.connections = o.mode == Mode::open ? 4 : 2;
    if (!batch_set) o.batch_size = 10;
  }
  if (o.connections == 0) o.connections = o.mode == Mode::open ? 64 : 4;
  if (o.mode == Mode::closed) o.connections = o.players;
  if (o.threads > o.connections) o.threads = o.connections;
  if (o.case_name.empty()) {
    char buf[160];
    const char* t = o.target == Target::bare ? "bare" : "quizflow";
    if (o.mode == Mode::closed)
      std::snprintf(buf, sizeof buf, "%s_closed_p%d_think%" PRId64 "-%" PRId64, t, o.players,
                    o.think_min_ms, o.think_max_ms);
    else if (o.mode == Mode::open)
      std::snprintf(buf, sizeof buf, "%s_open_r%.0f_c%d", t, o.rate, o.connections);
    else
      std::snprintf(buf, sizeof buf, "%s_batch_k%d_c%d", t, o.batch_size, o.connections);
    o.case_name = buf;
    if (o.smoke) o.case_name += "_smoke";
  }
  return o;
}

// ---------------------------------------------------------------- latency histogram

// Log-linear histogram of microseconds: exact below 128 µs, then 64 sub-buckets per power of
// two (relative error < 1.6%). Bounded memory whatever the run length; max kept exactly.
class Histogram {
 public:
  static constexpr int kSub = 64;
  static constexpr int kBuckets = 2 * kSub + 40 * kSub;

  Histogram() : counts_(kBuckets, 0) {}

  void record_ns(int64_t ns) {
    const uint64_t us = ns <= 0 ? 0 : static_cast<uint64_t>(ns / 1000);
    ++counts_[index(us)];
    ++total_;
    max_ns_ = std::max(max_ns_, ns);
  }
  void merge(const Histogram& o) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    max_ns_ = std::max(max_ns_, o.max_ns_);
  }
  uint64_t count() const { return total_; }
  double max_ms() const { return static_cast<double>(max_ns_) / 1e6; }
  // The q-quantile in ms (upper bound of its bucket, never above the exact max).
  double quantile_ms(double q) const {
    if (total_ == 0) return 0;
    const uint64_t rank =
        std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_))));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(static_cast<double>(upper_us(i)) / 1e3, max_ms());
    }
    return max_ms();
  }

 private:
  static size_t index(uint64_t us) {
    if (us < 2 * kSub) return static_cast<size_t>(us);
    const int shift = std::bit_width(us) - 7;  // mantissa in [64, 127]
    const uint64_t mant = us >> shift;
    const size_t i = static_cast<size_t>(2 * kSub + (shift - 1) * kSub) + (mant - kSub);
    return std::min(i, static_cast<size_t>(kBuckets - 1));
  }
  static uint64_t upper_us(size_t i) {
    if (i < 2 * kSub) return i;
    const size_t k = i - 2 * kSub;
    const int shift = static_cast<int>(k / kSub) + 1;
    const uint64_t mant = kSub + k % kSub;
    return ((mant + 1) << shift) - 1;
  }

  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  int64_t max_ns_ = 0;
};

// ---------------------------------------------------------------- visibility sampler

struct Sample {
  int64_t quiz_id = 0;
  int64_t user_id = 0;
  int64_t score = 0, correct = 0, time_ms = 0;  // the standing the player must reach
  int64_t response_ns = 0;                      // when the POST's response arrived
};

// Polls GET /v1/quizzes/{id}/players/{user} for each sample until the standing reaches the
// expected one; records the time since the POST's response. One blocking keep-alive connection.
class Sampler {
 public:
  explicit Sampler(const quizflow::tools::Url& url) : url_(url) {}

  void add(const Sample& s) {
    std::lock_guard lock(mu_);
    incoming_.push_back(s);
  }
  void finish() { done_.store(true); }

  void run() {
    HttpClient client(url_.host, url_.port, std::chrono::seconds(5));
    std::vector<Sample> pending;
    int64_t give_up_all_ns = 0;
    for (;;) {
      {
        std::lock_guard lock(mu_);
        for (auto& s : incoming_) pending.push_back(s);
        incoming_.clear();
      }
      if (done_.load()) {
        if (pending.empty()) break;
        if (give_up_all_ns == 0) give_up_all_ns = mono_ns() + kVisibilityGiveUpNs;
      }
      for (size_t i = 0; i < pending.size();) {
        const Sample& s = pending[i];
        bool resolved = false;
        try {
          const std::string path =
              "/v1/quizzes/" + std::to_string(s.quiz_id) + "/players/" + std::to_string(s.user_id);
          const HttpResponse r = client.request("GET", path);
          const int64_t now = mono_ns();
          if (r.status == 200 && reached(r.body, s)) {
            hist_.record_ns(now - s.response_ns);
            resolved = true;
          } else if (now - s.response_ns > kVisibilityGiveUpNs ||
                     (give_up_all_ns != 0 && now > give_up_all_ns)) {
            ++not_visible_;
            resolved = true;
          }
        } catch (const std::exception&) {
          ++poll_errors_;
          client.close();
        }
        if (resolved) {
          pending[i] = pending.back();
          pending.pop_back();
        } else {
          ++i;
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(pending.empty() ? 2000 : 500));
    }
  }

  const Histogram& histogram() const { return hist_; }
  uint64_t not_visible() const { return not_visible_; }
  uint64_t poll_errors() const { return poll_errors_; }

 private:
  static bool reached(const std::string& body, const Sample& s) {
    rapidjson::Document d;
    d.Parse(body.data(), body.size());
    if (d.HasParseError() || !d.IsObject()) return false;
    auto get = [&d](const char* k) -> int64_t {
      auto m = d.FindMember(k);
      return m != d.MemberEnd() && m->value.IsInt64() ? m->value.GetInt64() : -1;
    };
    return get("score") >= s.score && get("correct") >= s.correct && get("time_ms") >= s.time_ms;
  }

  quizflow::tools::Url url_;
  std::mutex mu_;
  std::vector<Sample> incoming_;  // guarded by mu_
  std::atomic<bool> done_{false};
  Histogram hist_;  // the sampler thread's until it is joined
  uint64_t not_visible_ = 0;
  uint64_t poll_errors_ = 0;
};

// ---------------------------------------------------------------- the run

struct Plan {
  Options o;
  sockaddr_in addr{};
  std::string host_header;
  int64_t quiz_id = 1;
  int64_t time_limit_ms = 20000;
  std::string run_tag;  // event_id prefix, unique per run
  int users_per_conn = 1;
  uint64_t seed = 0;
  int64_t start_ns = 0, end_ns = 0;
  Sampler* sampler = nullptr;  // null: no visibility samples
};

int correct_option(int question) { return question % kOptions; }

// Per worker: counters merged at the end.
struct Tally {
  Histogram latency;
  uint64_t ok_requests = 0;        // HTTP 200
  uint64_t ok_in_window = 0;       // HTTP 200 completed before the end of the run
  uint64_t answers_in_window = 0;  // accepted answers in those
  uint64_t answers_accepted = 0;   // all accepted answers
  uint64_t answers_duplicate = 0;  // items answered "duplicate"
  uint64_t answers_rejected = 0;   // items answered "rejected"
  uint64_t conn_errors = 0;        // reset, refused, EOF mid-response, unparsable response
  uint64_t timeouts = 0;           // no response within --timeout-ms (or by the end of drain)
  uint64_t stale_retries = 0;      // keep-alive connection closed by the server while idle
  uint64_t unsent_at_end = 0;      // open mode: scheduled sends still queued when the run ended
  uint64_t requests_sent = 0;
  int64_t last_response_ns = 0;
  std::map<int, uint64_t> status;  // non-200 statuses
};

class Worker {
 public:
  Worker(const Plan& plan, int index, std::vector<int> conn_ids)
      : p_(plan), index_(index), rng_(plan.seed ^ (0x9e3779b97f4a7c15ULL * (index + 1))) {
    for (int id : conn_ids) {
      Conn c;
      c.id = id;
      c.slots.resize(static_cast<size_t>(plan.users_per_conn));
      conns_.push_back(std::move(c));
    }
    auth_ = plan.o.token.empty() ? "" : "Authorization: Bearer " + plan.o.token + "\r\n";
  }

  // Opens every connection (blocking connect on loopback). Returns false with a message.
  bool connect_all(std::string& err) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) {
      err = std::string("epoll_create1: ") + std::strerror(errno);
      return false;
    }
    for (size_t i = 0; i < conns_.size(); ++i) {
      if (!open_conn(i)) {
        err = "connect: " + std::string(std::strerror(last_errno_));
        return false;
      }
    }
    return true;
  }

  void run();
  Tally& tally() { return t_; }

 private:
  struct Slot {  // one simulated user of a connection
    int64_t window = -1;
    int64_t score = 0, correct = 0, time_ms = 0;
    bool tainted = false;  // an answer of this user has an unknown fate: no samples
  };
  struct Item {  // an answer of the request in flight
    size_t slot;
    int64_t user_id;
    int64_t score, correct, time_ms;
  };
  enum class State { down, idle, busy, thinking };
  struct Conn {
    int id = 0;  // global connection index
    int fd = -1;
    State state = State::down;
    bool reused = false;  // a response already arrived on this socket
    bool retried = false;
    bool want_out = false;
    std::string out;
    size_t out_off = 0;
    std::string in;
    int64_t sched_ns = 0, sent_ns = 0, last_done_ns = 0, retry_at_ns = 0;
    uint64_t seq = 0;  // answers generated on this connection
    std::vector<Slot> slots;
    std::vector<Item> items;
  };

  bool open_conn(size_t i);
  void close_conn(size_t i);
  void fail(size_t i, bool timeout);
  void start_request(size_t i, int64_t sched_ns, int64_t now);
  void flush(size_t i, int64_t now);
  void on_readable(size_t i, int64_t now);
  bool try_response(size_t i, int64_t now);
  void finish_request(size_t i, int status, std::string_view body, int64_t now);
  void after_response(size_t i, int64_t now);
  void append_answer(Conn& c, std::string& body, int64_t now);
  const std::string& timestamp();
  void wait_events(int64_t until_ns);
  // The quiz of a connection's answers: connections are spread over --quizzes quizzes.
  int64_t quiz_of(const Conn& c) const { return p_.quiz_id + c.id % p_.o.quizzes; }

  const Plan& p_;
  int index_;
  std::mt19937_64 rng_;
  std::string auth_;
  std::vector<Conn> conns_;
  int ep_ = -1;
  int last_errno_ = 0;
  bool stopping_ = false;
  size_t in_flight_ = 0;
  Tally t_;
  // closed mode: players thinking, by wake-up time
  std::priority_queue<std::pair<int64_t, size_t>, std::vector<std::pair<int64_t, size_t>>,
                      std::greater<>>
      wake_;
  // open mode: idle connections and scheduled sends waiting for one
  std::vector<size_t> idle_;
  std::deque<int64_t> backlog_;
  int64_t next_arrival_ns_ = 0, arrival_step_ns_ = 0;
  int64_t next_sample_ns_ = 0;
  int64_t ts_sec_ = -1;
  std::string ts_;
  std::string body_;
  char rbuf_[65536];
  bool have_pwait2_ = true;
};

bool Worker::open_conn(size_t i) {
  Conn& c = conns_[i];
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    last_errno_ = errno;
    return false;
  }
  if (connect(fd, reinterpret_cast<const sockaddr*>(&p_.addr), sizeof p_.addr) != 0) {
    last_errno_ = errno;
    ::close(fd);
    return false;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = i;
  epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  c.fd = fd;
  c.state = State::idle;
  c.reused = false;
  c.want_out = false;
  c.in.clear();
  return true;
}

void Worker::close_conn(size_t i) {
  Conn& c = conns_[i];
  if (c.fd >= 0) {
    epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
  }
  c.fd = -1;
  c.state = State::down;
}

// The request in flight on connection i is lost (its fate is unknown): count it, taint its
// users, and reconnect a little later.
void Worker::fail(size_t i, bool timeout) {
  Conn& c = conns_[i];
  if (c.state == State::busy) {
    --in_flight_;
    ++(timeout ? t_.timeouts : t_.conn_errors);
    for (const Item& it : c.items) c.slots[it.slot].tainted = true;
  } else {
    ++t_.conn_errors;
  }
  close_conn(i);
  c.retry_at_ns = mono_ns() + 100'000'000;
}

const std::string& Worker::timestamp() {
  const int64_t ms = wall_ms();
  if (ms / 1000 != ts_sec_) {
    ts_sec_ = ms / 1000;
    ts_ = rfc3339(ms);
  }
  char m[16];
  std::snprintf(m, sizeof m, "%03d", static_cast<int>(ms % 1000));
  ts_.replace(20, 3, m, 3);
  return ts_;
}

// Appends the next answer of connection c to body and remembers what it adds to its user.
void Worker::append_answer(Conn& c, std::string& body, int64_t now) {
  const Options& o = p_.o;
  const uint64_t u = static_cast<uint64_t>(p_.users_per_conn);
  const uint64_t q = static_cast<uint64_t>(o.questions);
  const uint64_t seq = c.seq++;
  const size_t slot = static_cast<size_t>(seq % u);
  const int64_t round = static_cast<int64_t>(seq / u);
  const int question = static_cast<int>(round % static_cast<int64_t>(q)) + 1;
  const int64_t window = round / static_cast<int64_t>(q);
  const int64_t nconn = o.connections;
  const int64_t user = 1 + c.id + nconn * (window * static_cast<int64_t>(u) + slot);
  Slot& s = c.slots[slot];
  if (s.window != window) s = Slot{window, 0, 0, 0, false};

  int64_t elapsed;
  if (o.mode == Mode::closed) {  // the time since this player saw the question: its think time
    elapsed =
        c.last_done_ns == 0 ? (now - p_.start_ns) / 1'000'000 : (now - c.last_done_ns) / 1'000'000;
  } else {
    elapsed = std::uniform_int_distribution<int64_t>(200, p_.time_limit_ms)(rng_);
  }
  elapsed = std::clamp<int64_t>(elapsed, 0, p_.time_limit_ms);
  int option = correct_option(question);
  if (std::uniform_int_distribution<int>(0, 9)(rng_) >= 7)  // 30% pick another option
    option = (option + std::uniform_int_distribution<int>(1, kOptions - 1)(rng_)) % kOptions;
  const bool correct = option == correct_option(question);
  const int64_t points = correct ? kPoints - (kPoints * elapsed) / (2 * p_.time_limit_ms) : 0;
  c.items.push_back(Item{slot, user, points, correct ? 1 : 0, elapsed});

  char buf[320];
  const int n = std::snprintf(
      buf, sizeof buf,
      R"({"event_id":"%s-%d-%)" PRIu64 R"(","quiz_id":%)" PRId64 R"(,"user_id":%)" PRId64
      R"(,"question_id":%d,"option_id":%d,"answered_at":"%s","elapsed_ms":%)" PRId64 "}",
      p_.run_tag.c_str(), c.id, seq, quiz_of(c), user, question, option, timestamp().c_str(),
      elapsed);
  body.append(buf, static_cast<size_t>(n));
}

void Worker::start_request(size_t i, int64_t sched_ns, int64_t now) {
  Conn& c = conns_[i];
  c.items.clear();
  body_.clear();
  if (p_.o.mode == Mode::batch) {
    body_ += R"({"answers":[)";
    for (int k = 0; k < p_.o.batch_size; ++k) {
      if (k) body_ += ',';
      append_answer(c, body_, now);
    }
    body_ += "]}";
  } else {
    append_answer(c, body_, now);
  }
  c.out.clear();
  c.out += "POST /v1/answers HTTP/1.1\r\nHost: ";
  c.out += p_.host_header;
  c.out += "\r\nConnection: keep-alive\r\nContent-Type: application/json\r\n";
  c.out += auth_;
  c.out += "Content-Length: ";
  c.out += std::to_string(body_.size());
  c.out += "\r\n\r\n";
  c.out += body_;
  c.out_off = 0;
  c.sched_ns = sched_ns;
  c.sent_ns = now;
  c.retried = false;
  c.state = State::busy;
  ++in_flight_;
  ++t_.requests_sent;
  flush(i, now);
}

void Worker::flush(size_t i, int64_t /*now*/) {
  Conn& c = conns_[i];
  while (c.out_off < c.out.size()) {
    const ssize_t n = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c.want_out) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT;
        ev.data.u64 = i;
        epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
        c.want_out = true;
      }
      return;
    }
    // A reused keep-alive socket that the server closed while idle: resend once on a new one.
    if (c.reused && !c.retried && c.in.empty()) {
      const std::string out = std::move(c.out);
      const auto items = c.items;
      const int64_t sched = c.sched_ns, sent = c.sent_ns;
      close_conn(i);
      if (open_conn(i)) {
        ++t_.stale_retries;
        c.out = out;
        c.out_off = 0;
        c.items = items;
        c.sched_ns = sched;
        c.sent_ns = sent;
        c.retried = true;
        c.state = State::busy;
        continue;
      }
      c.state = State::busy;  // so fail() counts the request
    }
    fail(i, false);
    return;
  }
  if (c.want_out) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
    c.want_out = false;
  }
}

void Worker::on_readable(size_t i, int64_t now) {
  Conn& c = conns_[i];
  for (;;) {
    const ssize_t n = recv(c.fd, rbuf_, sizeof rbuf_, 0);
    if (n > 0) {
      c.in.append(rbuf_, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < sizeof rbuf_) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    // Closed by the server (n == 0) or reset.
    if (c.state == State::busy && c.reused && !c.retried && c.in.empty()) {
      // Stale keep-alive: the request never reached a live connection; send it again.
      Conn saved;
      saved.out = std::move(c.out);
      saved.items = c.items;
      const int64_t sched = c.sched_ns, sent = c.sent_ns;
      close_conn(i);
      if (open_conn(i)) {
        ++t_.stale_retries;
        c.out = std::move(saved.out);
        c.out_off = 0;
        c.items = std::move(saved.items);
        c.sched_ns = sched;
        c.sent_ns = sent;
        c.retried = true;
        c.state = State::busy;
        flush(i, now);
        return;
      }
      c.state = State::busy;
      fail(i, false);
      return;
    }
    if (c.state == State::busy) {
      fail(i, false);
    } else {  // an idle keep-alive connection closed by the server: reopen quietly
      const State was = c.state;
      close_conn(i);
      if (open_conn(i)) {
        c.state = was;
      } else {
        fail(i, false);
        if (was == State::thinking) c.state = State::down;
      }
    }
    return;
  }
  while (!c.in.empty() && c.fd >= 0) {
    if (!try_response(i, now)) break;
  }
}

bool ieq_prefix(std::string_view line, std::string_view name) {
  if (line.size() < name.size()) return false;
  for (size_t k = 0; k < name.size(); ++k)
    if (std::tolower(static_cast<unsigned char>(line[k])) != name[k]) return false;
  return true;
}

// Parses one complete response from c.in if there is one. Returns true when it consumed one.
bool Worker::try_response(size_t i, int64_t now) {
  Conn& c = conns_[i];
  const size_t head_end = c.in.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    if (c.in.size() > (1 << 16)) fail(i, false);
    return false;
  }
  const std::string_view head(c.in.data(), head_end);
  int status = 0;
  if (head.size() < 12 || head.substr(0, 5) != "HTTP/" ||
      std::sscanf(c.in.c_str() + 9, "%3d", &status) != 1) {
    fail(i, false);
    return false;
  }
  int64_t length = -1;
  bool close_after = false;
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos < head.size()) {
    const size_t start = pos + 2;
    size_t end = head.find("\r\n", start);
    if (end == std::string_view::npos) end = head.size();
    const std::string_view line = head.substr(start, end - start);
    if (ieq_prefix(line, "content-length:")) {
      length = std::strtoll(std::string(line.substr(15)).c_str(), nullptr, 10);
    } else if (ieq_prefix(line, "connection:")) {
      std::string v(line.substr(11));
      for (char& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      close_after = v.find("close") != std::string::npos;
    } else if (ieq_prefix(line, "transfer-encoding:")) {
      length = -2;  // chunked: not used by Pistache for these endpoints
    }
    pos = end;
  }
  if (length < 0) {
    fail(i, false);
    return false;
  }
  const size_t total = head_end + 4 + static_cast<size_t>(length);
  if (c.in.size() < total) return false;
  if (c.state != State::busy) {  // a response nobody asked for
    fail(i, false);
    return false;
  }
  finish_request(i, status,
                 std::string_view(c.in).substr(head_end + 4, static_cast<size_t>(length)), now);
  c.in.erase(0, total);
  c.reused = true;
  if (close_after) {  // we asked for keep-alive; honour a close anyway
    close_conn(i);
    if (!open_conn(i)) {
      c.retry_at_ns = now + 100'000'000;
      ++t_.conn_errors;
      return false;
    }
  }
  after_response(i, now);
  return true;
}

int64_t field_after(std::string_view body, std::string_view key) {
  const size_t k = body.find(key);
  if (k == std::string_view::npos) return -1;
  return std::strtoll(std::string(body.substr(k + key.size(), 24)).c_str(), nullptr, 10);
}

void Worker::finish_request(size_t i, int status, std::string_view body, int64_t now) {
  Conn& c = conns_[i];
  --in_flight_;
  c.state = State::idle;
  const int64_t from = p_.o.mode == Mode::open ? c.sched_ns : c.sent_ns;
  t_.latency.record_ns(now - from);
  t_.last_response_ns = std::max(t_.last_response_ns, now);
  const bool in_window = now <= p_.end_ns;
  if (status != 200) {
    ++t_.status[status];
    for (const Item& it : c.items) c.slots[it.slot].tainted = true;
    return;
  }
  ++t_.ok_requests;
  const int64_t accepted = std::max<int64_t>(0, field_after(body, "\"accepted\":"));
  const int64_t dups = std::max<int64_t>(0, field_after(body, "\"duplicates\":"));
  const int64_t rejected = std::max<int64_t>(0, field_after(body, "\"rejected\":"));
  t_.answers_accepted += static_cast<uint64_t>(accepted);
  t_.answers_duplicate += static_cast<uint64_t>(dups);
  t_.answers_rejected += static_cast<uint64_t>(rejected);
  if (in_window) {
    ++t_.ok_in_window;
    t_.answers_in_window += static_cast<uint64_t>(accepted);
  }
  const bool all_counted = accepted == static_cast<int64_t>(c.items.size());
  for (const Item& it : c.items) {
    Slot& s = c.slots[it.slot];
    if (!all_counted) s.tainted = true;
    s.score += it.score;
    s.correct += it.correct;
    s.time_ms += it.time_ms;
  }
  if (p_.sampler && all_counted && now >= next_sample_ns_ && !c.items.empty()) {
    const Item& last = c.items.back();
    const Slot& s = c.slots[last.slot];
    if (!s.tainted) {
      p_.sampler->add(Sample{quiz_of(c), last.user_id, s.score, s.correct, s.time_ms, now});
      next_sample_ns_ = now + p_.o.visibility_interval_ms * 1'000'000 * p_.o.threads;
    }
  }
}

void Worker::after_response(size_t i, int64_t now) {
  Conn& c = conns_[i];
  c.last_done_ns = now;
  if (stopping_) return;
  switch (p_.o.mode) {
    case Mode::closed: {
      const int64_t think_ms =
          std::uniform_int_distribution<int64_t>(p_.o.think_min_ms, p_.o.think_max_ms)(rng_);
      c.state = State::thinking;
      wake_.emplace(now + think_ms * 1'000'000, i);
      break;
    }
    case Mode::batch:
      start_request(i, now, now);
      break;
    case Mode::open:
      if (!backlog_.empty()) {
        const int64_t sched = backlog_.front();
        backlog_.pop_front();
        start_request(i, sched, now);
      } else {
        idle_.push_back(i);
      }
      break;
  }
}

void Worker::wait_events(int64_t until_ns) {
  epoll_event evs[256];
  const int64_t wait_ns = std::max<int64_t>(0, until_ns - mono_ns());
  int n;
  if (have_pwait2_) {
    timespec ts{static_cast<time_t>(wait_ns / kNs), static_cast<long>(wait_ns % kNs)};
    n = epoll_pwait2(ep_, evs, 256, &ts, nullptr);
    if (n < 0 && errno == ENOSYS) {
      have_pwait2_ = false;
      return;
    }
  } else {
    n = epoll_wait(ep_, evs, 256, static_cast<int>((wait_ns + 999'999) / 1'000'000));
  }
  const int64_t now = mono_ns();
  for (int k = 0; k < n; ++k) {
    const size_t i = static_cast<size_t>(evs[k].data.u64);
    if (i >= conns_.size() || conns_[i].fd < 0) continue;
    if (evs[k].events & EPOLLOUT) flush(i, now);
    if (conns_[i].fd >= 0 && (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_readable(i, now);
  }
}

void Worker::run() {
  const Options& o = p_.o;
  // Wait for the common start.
  while (mono_ns() < p_.start_ns) std::this_thread::sleep_for(std::chrono::microseconds(200));
  const int64_t start = p_.start_ns;
  next_sample_ns_ = start + o.visibility_interval_ms * 1'000'000 * index_;
  if (o.mode == Mode::open) {
    arrival_step_ns_ = static_cast<int64_t>(1e9 * o.threads / o.rate);
    next_arrival_ns_ = start + static_cast<int64_t>(1e9 * index_ / o.rate);
    for (size_t i = conns_.size(); i-- > 0;) idle_.push_back(i);
  }
  for (size_t i = 0; i < conns_.size(); ++i) {
    if (o.mode == Mode::closed) {
      const int64_t first =
          std::uniform_int_distribution<int64_t>(o.think_min_ms, o.think_max_ms)(rng_);
      conns_[i].state = State::thinking;
      wake_.emplace(start + first * 1'000'000, i);
    } else if (o.mode == Mode::batch) {
      start_request(i, start, mono_ns());
    }
  }
  const int64_t timeout_ns = o.timeout_ms * 1'000'000;
  const int64_t drain_ns = std::min<int64_t>(timeout_ns, 10 * kNs);
  int64_t next_check_ns = start + 50'000'000;
  for (;;) {
    int64_t now = mono_ns();
    if (!stopping_ && now >= p_.end_ns) {
      stopping_ = true;
      t_.unsent_at_end += backlog_.size();
      backlog_.clear();
    }
    if (stopping_ && (in_flight_ == 0 || now >= p_.end_ns + drain_ns)) break;
    int64_t next = stopping_ ? p_.end_ns + drain_ns : p_.end_ns;
    if (!stopping_) {
      if (o.mode == Mode::open) {
        while (next_arrival_ns_ <= now && next_arrival_ns_ < p_.end_ns) {
          backlog_.push_back(next_arrival_ns_);
          next_arrival_ns_ += arrival_step_ns_;
        }
        while (!backlog_.empty() && !idle_.empty()) {
          const size_t i = idle_.back();
          idle_.pop_back();
          if (conns_[i].state != State::idle) continue;
          const int64_t sched = backlog_.front();
          backlog_.pop_front();
          start_request(i, sched, now);
        }
        if (next_arrival_ns_ < p_.end_ns) next = std::min(next, next_arrival_ns_);
      } else if (o.mode == Mode::closed) {
        while (!wake_.empty() && wake_.top().first <= now) {
          const size_t i = wake_.top().second;
          const int64_t due = wake_.top().first;
          wake_.pop();
          if (conns_[i].state == State::thinking) start_request(i, due, now);
        }
        if (!wake_.empty()) next = std::min(next, wake_.top().first);
      }
    }
    if (now >= next_check_ns) {  // timeouts and reconnects
      next_check_ns = now + 50'000'000;
      for (size_t i = 0; i < conns_.size(); ++i) {
        Conn& c = conns_[i];
        if (c.state == State::busy && now - c.sent_ns > timeout_ns) {
          fail(i, true);
        } else if (c.state == State::down && now >= c.retry_at_ns && !stopping_) {
          if (!open_conn(i)) {
            ++t_.conn_errors;
            c.state = State::down;
            c.retry_at_ns = now + 100'000'000;
          } else if (o.mode == Mode::closed) {
            c.state = State::thinking;
            wake_.emplace(now, i);
          } else if (o.mode == Mode::batch) {
            start_request(i, now, now);
          } else {
            idle_.push_back(i);
          }
        }
      }
    }
    next = std::min(next, next_check_ns);
    wait_events(next);
  }
  // Whatever is still in flight after the drain never got an answer.
  for (size_t i = 0; i < conns_.size(); ++i) {
    if (conns_[i].state == State::busy) fail(i, true);
    close_conn(i);
  }
  ::close(ep_);
}

bool resolve(const std::string& host, uint16_t port, sockaddr_in& out, std::string& err) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res) {
    err = "cannot resolve " + host + ": " + gai_strerror(rc);
    return false;
  }
  out = *reinterpret_cast<sockaddr_in*>(res->ai_addr);
  out.sin_port = htons(port);
  freeaddrinfo(res);
  return true;
}

std::string quiz_json(int64_t quiz_id, int questions, int64_t time_limit_ms, int64_t now_ms,
                      int64_t closes_in_ms) {
  std::string s = "{\"quiz_id\":" + std::to_string(quiz_id) + ",\"title\":\"qf-http-load " +
                  std::to_string(quiz_id) + "\",\"opens_at\":\"" + rfc3339(now_ms - 60'000) +
                  "\",\"closes_at\":\"" + rfc3339(now_ms + closes_in_ms) + "\",\"questions\":[";
  for (int q = 1; q <= questions; ++q) {
    if (q > 1) s += ',';
    s += "{\"question_id\":" + std::to_string(q) + ",\"option_count\":" + std::to_string(kOptions) +
         ",\"correct_option\":" + std::to_string(correct_option(q)) +
         ",\"points\":" + std::to_string(kPoints) +
         ",\"time_limit_ms\":" + std::to_string(time_limit_ms) + "}";
  }
  s += "],\"rewards\":[{\"rank_from\":1,\"rank_to\":3,\"reward\":\"bench medal\"}]}";
  return s;
}

std::string base36(uint64_t v) {
  std::string s;
  do {
    s += "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
    v /= 36;
  } while (v);
  return {s.rbegin(), s.rend()};
}

void result(const std::string& case_name, const char* metric, double value, const char* unit) {
  std::printf("RESULT bench=http case=%s metric=%s value=%.3f unit=%s\n", case_name.c_str(), metric,
              value, unit);
}

}  // namespace

int main(int argc, char** argv) {
  const auto parsed = parse_args(argc, argv);
  if (!parsed) return 2;
  Plan plan;
  plan.o = *parsed;
  const Options& o = plan.o;
  std::signal(SIGPIPE, SIG_IGN);
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  quizflow::tools::Url url;
  try {
    url = quizflow::tools::parse_url(o.url);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qf-http-load: bad --url: %s\n", e.what());
    return 2;
  }
  std::string err;
  if (!resolve(url.host, url.port, plan.addr, err)) {
    std::fprintf(stderr, "qf-http-load: %s\n", err.c_str());
    return 3;
  }
  plan.host_header = url.host + ":" + std::to_string(url.port);
  const int64_t now_ms = wall_ms();
  plan.seed = o.seed.value_or(std::random_device{}() ^ static_cast<uint64_t>(now_ms));
  plan.run_tag = "L";
  plan.run_tag +=
      base36(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count()));
  plan.run_tag += base36(static_cast<uint64_t>(getpid()));
  plan.users_per_conn = o.mode == Mode::closed  ? 1
                        : o.mode == Mode::batch ? std::max(o.batch_size, 8)
                                                : 8;
  if (o.mode == Mode::closed)
    plan.time_limit_ms = std::clamp<int64_t>(o.think_max_ms + 1000, 20000, 600000);

  // Set-up: the quiz (quizflow) or a health check (bare), on an ordinary client.
  plan.quiz_id = 1;
  try {
    HttpClient setup(url.host, url.port, std::chrono::seconds(30));
    if (o.target == Target::quizflow) {
      plan.quiz_id = o.quiz_id.value_or(std::chrono::duration_cast<std::chrono::microseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count() +
                                        1);
      HttpClient::Headers h;
      if (!o.token.empty()) h.emplace_back("Authorization", "Bearer " + o.token);
      const int64_t closes_in_ms = static_cast<int64_t>(o.duration_s * 1000) + 3'600'000;
      for (int q = 0; q < o.quizzes; ++q) {
        const int64_t id = plan.quiz_id + q;
        const HttpResponse r =
            setup.request("POST", "/v1/quizzes",
                          quiz_json(id, o.questions, plan.time_limit_ms, now_ms, closes_in_ms), h);
        if (r.status != 201 && r.status != 200) {
          std::fprintf(stderr, "qf-http-load: creating quiz %" PRId64 ": HTTP %d %s\n", id,
                       r.status, r.body.c_str());
          return 3;
        }
      }
    } else {
      const HttpResponse r = setup.request("GET", "/health");
      if (r.status != 200) {
        std::fprintf(stderr, "qf-http-load: GET /health: HTTP %d %s\n", r.status, r.body.c_str());
        return 3;
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qf-http-load: cannot reach %s: %s\n", o.url.c_str(), e.what());
    return 3;
  }

  std::optional<Sampler> sampler;
  if (o.target == Target::quizflow && o.visibility_interval_ms > 0) {
    sampler.emplace(url);
    plan.sampler = &*sampler;
  }

  std::vector<std::vector<int>> split(static_cast<size_t>(o.threads));
  for (int c = 0; c < o.connections; ++c) split[static_cast<size_t>(c % o.threads)].push_back(c);
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < o.threads; ++t) {
    workers.push_back(std::make_unique<Worker>(plan, t, split[static_cast<size_t>(t)]));
    if (!workers.back()->connect_all(err)) {
      std::fprintf(stderr, "qf-http-load: %s\n", err.c_str());
      return 3;
    }
  }

  std::fprintf(stderr,
               "qf-http-load: %s, target %s, mode %s, case %s, %d connection(s) on %d "
               "thread(s), %.1f s, seed %" PRIu64 ", quiz %" PRId64 " (%d quiz(zes))\n",
               o.url.c_str(), o.target == Target::bare ? "bare" : "quizflow",
               o.mode == Mode::closed ? "closed"
               : o.mode == Mode::open ? "open"
                                      : "batch",
               o.case_name.c_str(), o.connections, o.threads, o.duration_s, plan.seed, plan.quiz_id,
               o.quizzes);
  plan.start_ns = mono_ns() + 20'000'000;
  plan.end_ns = plan.start_ns + static_cast<int64_t>(o.duration_s * 1e9);
  std::thread sampler_thread;
  if (sampler) sampler_thread = std::thread([&] { sampler->run(); });
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
  for (auto& t : threads) t.join();
  if (sampler) {
    sampler->finish();
    sampler_thread.join();
  }

  Tally all;
  for (auto& w : workers) {
    Tally& t = w->tally();
    all.latency.merge(t.latency);
    all.ok_requests += t.ok_requests;
    all.ok_in_window += t.ok_in_window;
    all.answers_in_window += t.answers_in_window;
    all.answers_accepted += t.answers_accepted;
    all.answers_duplicate += t.answers_duplicate;
    all.answers_rejected += t.answers_rejected;
    all.conn_errors += t.conn_errors;
    all.timeouts += t.timeouts;
    all.stale_retries += t.stale_retries;
    all.unsent_at_end += t.unsent_at_end;
    all.requests_sent += t.requests_sent;
    all.last_response_ns = std::max(all.last_response_ns, t.last_response_ns);
    for (auto [s, n] : t.status) all.status[s] += n;
  }
  uint64_t non200 = 0;
  for (auto [s, n] : all.status) non200 += n;
  const uint64_t errors =
      non200 + all.conn_errors + all.timeouts + all.answers_duplicate + all.answers_rejected;
  const double secs = o.duration_s;
  const double rps = static_cast<double>(all.ok_in_window) / secs;
  const double aps = static_cast<double>(all.answers_in_window) / secs;
  const Histogram& lat = all.latency;

  result(o.case_name, "throughput_rps", rps, "req/s");
  result(o.case_name, "answers_per_s", aps, "answers/s");
  result(o.case_name, "p50_ms", lat.quantile_ms(0.50), "ms");
  result(o.case_name, "p95_ms", lat.quantile_ms(0.95), "ms");
  result(o.case_name, "p99_ms", lat.quantile_ms(0.99), "ms");
  result(o.case_name, "max_ms", lat.max_ms(), "ms");
  result(o.case_name, "errors", static_cast<double>(errors), "count");
  // For CPU accounting per request (scripts/bench): every 200 during the run and this
  // client's own CPU time for the whole run.
  result(o.case_name, "requests_ok", static_cast<double>(all.ok_requests), "count");
  {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    const double cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    result(o.case_name, "client_cpu_s", cpu_s, "s");
  }
  if (sampler && sampler->histogram().count() > 0) {
    result(o.case_name, "visibility_p50_ms", sampler->histogram().quantile_ms(0.50), "ms");
    result(o.case_name, "visibility_p99_ms", sampler->histogram().quantile_ms(0.99), "ms");
  }
  std::fflush(stdout);

  std::fprintf(stderr, "  requests: %" PRIu64 " sent, %" PRIu64 " answered 200 (%.0f req/s",
               all.requests_sent, all.ok_requests, rps);
  if (o.mode == Mode::open) std::fprintf(stderr, ", offered %.0f req/s", o.rate);
  std::fprintf(stderr, "), answers accepted %" PRIu64 " (%.0f answers/s)\n", all.answers_accepted,
               aps);
  std::fprintf(
      stderr,
      "  latency%s: p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms (%" PRIu64 " samples)\n",
      o.mode == Mode::open ? " from scheduled send" : " POST to response", lat.quantile_ms(0.5),
      lat.quantile_ms(0.95), lat.quantile_ms(0.99), lat.max_ms(), lat.count());
  std::fprintf(stderr,
               "  errors: %" PRIu64 " (connection %" PRIu64 ", timeouts %" PRIu64
               ", duplicate items %" PRIu64 ", rejected items %" PRIu64,
               errors, all.conn_errors, all.timeouts, all.answers_duplicate, all.answers_rejected);
  for (auto [s, n] : all.status) std::fprintf(stderr, ", HTTP %d: %" PRIu64, s, n);
  std::fprintf(stderr, ")\n");
  if (all.stale_retries)
    std::fprintf(stderr, "  keep-alive connections found closed and reopened: %" PRIu64 "\n",
                 all.stale_retries);
  if (all.unsent_at_end)
    std::fprintf(stderr,
                 "  open loop fell behind: %" PRIu64 " scheduled sends never left the client\n",
                 all.unsent_at_end);
  if (sampler) {
    const Histogram& v = sampler->histogram();
    std::fprintf(stderr,
                 "  visibility (response -> standing shows the answer): %" PRIu64
                 " samples, p50 %.2f ms, p99 %.2f ms, max %.2f ms; not visible in 30 s: %" PRIu64
                 ", poll errors: %" PRIu64 "\n",
                 v.count(), v.quantile_ms(0.5), v.quantile_ms(0.99), v.max_ms(),
                 sampler->not_visible(), sampler->poll_errors());
  }
  std::fprintf(
      stderr, "  drain: last response %.3f s after the end of the run\n",
      static_cast<double>(std::max(all.last_response_ns, plan.end_ns) - plan.end_ns) / 1e9);
  if (all.ok_requests == 0) return 1;
  if (o.smoke && (errors > 0 || (sampler && sampler->not_visible() > 0))) return 1;
  return 0;
}
