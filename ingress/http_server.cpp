#include "ingress/http_server.h"

#include <pistache/endpoint.h>
#include <pistache/http.h>
#include <pistache/peer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <charconv>
#include <cstdlib>
#include <optional>
#include <ostream>
#include <string_view>
#include <vector>

#include "core/log_rate.h"
#include "core/time_util.h"
#include "ingress/http_replies.h"
#include "ingress/json_out.h"
#include "ingress/kafka_answers.h"
#include "ingress/status_page.h"
#include "pipeline/engine.h"

namespace quizflow::ingress {

// The parts of the handler that Pistache's per-thread clones share.
struct HttpServer::Shared {
  std::atomic<bool> refusing{false};
  int max_connections = 0;  // effective limit (QUIZFLOW_HTTP_MAX_CONNECTIONS, the fd limit)
  std::atomic<int64_t> over_limit{0};  // connections beyond it that may still ask for /health
  std::unique_ptr<ReplyDeadlines> deadlines;
  std::unique_ptr<BlockingCalls> calls;
};

namespace {

using Shared = HttpServer::Shared;

using namespace Pistache;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

// Pistache 0.0.5 drops headers added with addRaw() from responses: Retry-After must be a
// typed header to reach the client.
class RetryAfter : public Http::Header::Header {
 public:
  NAME("Retry-After")
  RetryAfter() = default;
  explicit RetryAfter(int seconds) : seconds_(seconds) {}
  void parse(const std::string& s) override { seconds_ = std::atoi(s.c_str()); }
  void write(std::ostream& os) const override { os << seconds_; }

 private:
  int seconds_ = 1;
};

void retry_after(Http::ResponseWriter& w) { w.headers().add<RetryAfter>(1); }

// Typed for the same reason as Retry-After.
class ContentSecurityPolicy : public Http::Header::Header {
 public:
  NAME("Content-Security-Policy")
  ContentSecurityPolicy() = default;
  explicit ContentSecurityPolicy(std::string_view policy) : policy_(policy) {}
  void parse(const std::string& s) override { policy_ = s; }
  void write(std::ostream& os) const override { os << policy_; }

 private:
  std::string policy_;
};

void send_json(Http::ResponseWriter& w, Http::Code code, const std::string& body) {
  w.headers().add<Http::Header::ContentType>(MIME(Application, Json));
  w.send(code, body);
}

void send_error(Http::ResponseWriter& w, Http::Code code, const std::string& err_code,
                const std::string& message, const std::string& field = {}) {
  send_json(w, code, error_body(err_code, message, field));
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char diff = static_cast<unsigned char>(a.size() != b.size());
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

// A response that its completion or its deadline (QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS) sends,
// whichever comes first: the other finds it claimed. The deadline answers 503 + Retry-After
// with `code` and `message` (the outcome is unknown; a resend is safe).
class PendingReply : public Expirable {
 public:
  PendingReply(Http::ResponseWriter w, HttpMetrics& metrics, std::string code, std::string message)
      : writer_(std::move(w)),
        metrics_(metrics),
        code_(std::move(code)),
        message_(std::move(message)) {}

  // Runs `send` with the writer unless the deadline answered first (or the client left). Does
  // not throw.
  template <typename Send>
  void answer(Send&& send) noexcept {
    if (claimed_.exchange(true, std::memory_order_acq_rel)) return;
    // Held through the send: Pistache 0.0.5 locks the peer's weak pointer twice while sending
    // and would dereference a null one if the connection went away in between.
    std::shared_ptr<Tcp::Peer> peer;
    try {
      peer = writer_.peer();
    } catch (const std::exception&) {
      return;  // the client left: nobody to answer
    }
    if (!peer) return;
    try {
      send(writer_);
    } catch (const std::exception& e) {
      static LogRate rate;
      if (int64_t more = 0; rate.allow(more))
        spdlog::error("http: answering a request failed: {} ({} more held back)", e.what(), more);
    } catch (...) {
      spdlog::error("http: answering a request failed: unknown exception");
    }
  }

  bool claimed() const { return claimed_.load(std::memory_order_acquire); }

  void expire() noexcept override {
    answer([this](Http::ResponseWriter& w) {
      metrics_.timed_out.fetch_add(1, std::memory_order_relaxed);
      retry_after(w);
      send_error(w, Http::Code::Service_Unavailable, code_, message_);
    });
  }

 private:
  Http::ResponseWriter writer_;
  HttpMetrics& metrics_;
  const std::string code_, message_;
  std::atomic<bool> claimed_{false};
};

// Kept in a client connection's data: counts it in `n` for as long as Pistache holds the
// connection, whichever way it ends.
class Counted {
 public:
  explicit Counted(std::atomic<int64_t>& n) : n_(n) { n_.fetch_add(1, std::memory_order_relaxed); }
  ~Counted() { n_.fetch_sub(1, std::memory_order_relaxed); }
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;

 private:
  std::atomic<int64_t>& n_;
};

constexpr const char* kConnectionKey = "quizflow.connection";
constexpr const char* kOverLimitKey = "quizflow.over_limit";
// Connections beyond QUIZFLOW_HTTP_MAX_CONNECTIONS that are kept open for GET /health only
// (every other request on them is answered 503); beyond these, new ones are closed at once.
constexpr int64_t kHealthOnlyConnections = 32;

std::vector<std::string_view> split_path(std::string_view p) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < p.size()) {
    while (i < p.size() && p[i] == '/') ++i;
    size_t j = i;
    while (j < p.size() && p[j] != '/') ++j;
    if (j > i) out.push_back(p.substr(i, j - i));
    i = j;
  }
  return out;
}

std::optional<int64_t> parse_id(std::string_view s) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v < 1) return std::nullopt;
  return v;
}

// A response made away from Pistache's writer (by a storage call), sent afterwards.
struct Out {
  Http::Code code = Http::Code::Internal_Server_Error;
  std::string body;
  bool retry = false;  // Retry-After: 1
};
void retry_after(Out& o) { o.retry = true; }
void send_json(Out& o, Http::Code code, const std::string& body) {
  o.code = code;
  o.body = body;
}
void send_error(Out& o, Http::Code code, const std::string& err_code, const std::string& message,
                const std::string& field = {}) {
  send_json(o, code, error_body(err_code, message, field));
}
void send(Http::ResponseWriter& w, const Out& o) {
  if (o.retry) retry_after(w);
  send_json(w, o.code, o.body);
}

// A read or write whose storage call failed: 503, retry later.
template <typename W>
void storage_failed(W& w, const char* what, const Status& st) {
  static LogRate rate;
  if (int64_t more = 0; rate.allow(more))
    spdlog::error("http: {} failed in storage: {} ({} more held back)", what, st.to_string(), more);
  retry_after(w);
  send_error(w, Http::Code::Service_Unavailable, kStorageUnavailable,
             "storage is unavailable; retry");
}

template <typename W>
void not_found(W& w) {
  send_error(w, Http::Code::Not_Found, "not_found", "no such quiz", "quiz_id");
}

class Handler : public Http::Handler {
 public:
  HTTP_PROTOTYPE(Handler)

  Handler(Engine& engine, KafkaAnswers* kafka, std::shared_ptr<Shared> shared)
      : engine_(&engine), kafka_(kafka), shared_(std::move(shared)) {}

  // Beyond the connection limit a new connection may only ask for /health (a few of them),
  // further ones are closed at once; all are counted, and the connections open go on being
  // served. Replaces Pistache's own onConnection (private: it cannot be called), which only
  // installs the request parser.
  void onConnection(const std::shared_ptr<Tcp::Peer>& peer) override {
    peer->putData(ParserData, std::make_shared<Http::RequestParser>(getMaxRequestSize()));
    HttpMetrics& m = engine_->http_metrics();
    if (m.connections.load(std::memory_order_relaxed) < shared_->max_connections) {
      peer->putData(kConnectionKey, std::make_shared<Counted>(m.connections));
      return;
    }
    m.connections_refused.fetch_add(1, std::memory_order_relaxed);
    static LogRate rate;
    if (int64_t more = 0; rate.allow(more))
      spdlog::warn(
          "http: {} connections open (QUIZFLOW_HTTP_MAX_CONNECTIONS); new ones are refused ({} "
          "more held back)",
          shared_->max_connections, more);
    if (shared_->over_limit.load(std::memory_order_relaxed) < kHealthOnlyConnections) {
      peer->putData(kOverLimitKey, std::make_shared<Counted>(shared_->over_limit));
      return;
    }
    ::shutdown(peer->fd(), SHUT_RDWR);  // the reactor sees the end and lets it go
  }

  void onRequest(const Http::Request& req, Http::ResponseWriter w) override {
    try {
      route(req, std::move(w));
    } catch (const std::exception& e) {
      spdlog::error("http {} {}: {}", Http::methodString(req.method()), req.resource(), e.what());
      // The writer may have been moved; nothing more can be sent safely here.
    }
  }

  void onTimeout(const Http::Request&, Http::ResponseWriter w) override {
    send_error(w, Http::Code::Request_Timeout, "timeout",
               "no complete request or no answer in time; retrying is safe");
  }

  // A reply bounded by QUIZFLOW_HTTP_REQUEST_TIMEOUT_MS (its deadline armed).
  std::shared_ptr<PendingReply> pending(Http::ResponseWriter w, const char* code,
                                        const char* message) {
    // Not make_shared: the deadline thread's weak pointer must not keep the writer's memory.
    auto reply = std::shared_ptr<PendingReply>(
        new PendingReply(std::move(w), engine_->http_metrics(), code, message));
    shared_->deadlines->watch(reply);
    return reply;
  }

  // Runs `call(writer)` on the storage-call threads: a hung database holds those, never
  // Pistache's threads (/health, answers). Everything `call` needs from the request must be
  // captured by value: the request does not outlive onRequest.
  template <typename Call>
  void offload(Http::ResponseWriter w, Call call) {
    auto reply = pending(std::move(w), kStorageUnavailable,
                         "storage did not answer in time; retry (a write retried is idempotent)");
    // The storage call runs unclaimed, so the deadline can still answer while it blocks; a call
    // whose deadline passed while it waited is not started.
    const bool queued = shared_->calls->post([reply, call = std::move(call)]() mutable {
      if (reply->claimed()) return;
      Out out;
      call(out);
      reply->answer([&out](Http::ResponseWriter& rw) { send(rw, out); });
    });
    if (!queued)
      reply->answer([](Http::ResponseWriter& rw) {
        retry_after(rw);
        send_error(rw, Http::Code::Service_Unavailable, "overloaded",
                   "too many requests wait for storage; retry later");
      });
  }

 private:
  // True when no token is configured or the request carries it.
  bool token_ok(const Http::Request& req) const {
    const std::string& token = engine_->config().api_token;
    if (token.empty()) return true;
    // Pistache parses Authorization into a typed header (tryGetRaw never finds it).
    auto h = req.headers().tryGet<Http::Header::Authorization>();
    const std::string given_value = h ? h->value() : std::string();
    const std::string_view given = given_value;
    constexpr std::string_view kBearer = "Bearer ";
    return given.substr(0, kBearer.size()) == kBearer &&
           constant_time_equal(given.substr(kBearer.size()), token);
  }

  bool authorized(const Http::Request& req, Http::ResponseWriter& w) {
    const bool ok = token_ok(req);
    if (!ok) send_error(w, Http::Code::Unauthorized, "unauthorized", "missing or bad bearer token");
    return ok;
  }

  void route(const Http::Request& req, Http::ResponseWriter w) {
    const auto parts = split_path(req.resource());
    const auto method = req.method();
    const bool get = method == Http::Method::Get;
    if (parts.size() == 1 && parts[0] == "health") return get ? health(w) : not_allowed(w);
    if (auto peer = w.peer(); peer && peer->tryGetData(kOverLimitKey)) {
      retry_after(w);
      return send_error(w, Http::Code::Service_Unavailable, "too_many_connections",
                        "the server has QUIZFLOW_HTTP_MAX_CONNECTIONS connections open; retry "
                        "later on a new connection");
    }
    if (parts.empty() || (parts.size() == 1 && parts[0] == "status"))
      return get ? status_page(w) : not_allowed(w);
    if (parts.size() == 2 && parts[0] == "monitoring" && parts[1] == "stats")
      return get ? send_json(w, Http::Code::Ok, stats_json(engine_->stats())) : not_allowed(w);
    if (parts.size() == 1 && parts[0] == "metrics") {
      if (!get) return not_allowed(w);
      w.headers().add<Http::Header::ContentType>(
          Http::Mime::MediaType::fromString("text/plain; version=0.0.4; charset=utf-8"));
      return void(w.send(Http::Code::Ok, stats_prometheus(engine_->stats())));
    }
    if (parts.size() >= 2 && parts[0] == "v1") {
      if (parts[1] == "answers" && parts.size() == 2) {
        if (method != Http::Method::Post) return not_allowed(w);
        return post_answers(req, std::move(w));
      }
      if (parts[1] == "quizzes") {
        if (parts.size() == 2) {
          if (method != Http::Method::Post) return not_allowed(w);
          return post_quiz(req, std::move(w));
        }
        const auto id = parse_id(parts[2]);
        if (!id)
          return send_error(w, Http::Code::Not_Found, "not_found", "no such quiz", "quiz_id");
        if (parts.size() == 4 && parts[3] == "close") {
          if (method != Http::Method::Post) return not_allowed(w);
          return close_quiz(req, *id, std::move(w));
        }
        if (method != Http::Method::Get) return not_allowed(w);
        if (parts.size() == 3) return get_quiz(req, *id, std::move(w));
        if (parts.size() == 4 && parts[3] == "rewards") return rewards(*id, std::move(w));
        if (parts.size() == 4 && parts[3] == "leaderboard")
          return leaderboard(req, *id, std::move(w));
        if (parts.size() == 5 && parts[3] == "players") {
          const auto uid = parse_id(parts[4]);
          if (!uid)
            return send_error(w, Http::Code::Not_Found, "not_found", "no such player", "user_id");
          return player(*id, *uid, std::move(w));
        }
      }
    }
    send_error(w, Http::Code::Not_Found, "not_found", "no such endpoint");
  }

  void not_allowed(Http::ResponseWriter& w) {
    send_error(w, Http::Code::Method_Not_Allowed, "method_not_allowed", "method not allowed");
  }

  // The status page (ingress/status_page.h): static, so any cache must revalidate it (a new
  // binary may serve a new page).
  void status_page(Http::ResponseWriter& w) {
    w.headers().add<Http::Header::ContentType>(
        Http::Mime::MediaType::fromString(std::string(kStatusPageContentType)));
    w.headers().add<Http::Header::CacheControl>(Http::CacheDirective::NoCache);
    w.headers().add<ContentSecurityPolicy>(kStatusPagePolicy);
    w.send(Http::Code::Ok, std::string(status_page_html()));
  }

  bool body_fits(const Http::Request& req, Http::ResponseWriter& w) {
    if (static_cast<int64_t>(req.body().size()) > engine_->config().http_max_body_bytes) {
      send_error(
          w, Http::Code::Request_Entity_Too_Large, "too_large",
          "body larger than " + std::to_string(engine_->config().http_max_body_bytes) + " bytes");
      return false;
    }
    return true;
  }

  void health(Http::ResponseWriter& w) {
    const HealthReport h = engine_->health();
    send_json(w, h.healthy ? Http::Code::Ok : Http::Code::Service_Unavailable, health_body(h));
  }

  void post_answers(const Http::Request& req, Http::ResponseWriter w) {
    if (!authorized(req, w) || !body_fits(req, w)) return;
    if (shared_->refusing.load(std::memory_order_acquire)) {
      retry_after(w);
      return send_error(w, Http::Code::Service_Unavailable, "shutting_down",
                        "the engine is shutting down; retry");
    }
    auto reply = pending(std::move(w), "outcome_unknown",
                         "not committed in time; the answers may still be: resending them is "
                         "safe (an answer stored is answered duplicate, never counted twice)");
    // The completion runs on an engine thread and must not throw (docs/error-policy.md).
    auto done = [reply](Request& r) noexcept {
      reply->answer([&r](Http::ResponseWriter& rw) {
        int status = 200;
        std::string body = answers_body(r, status);
        if (status == 503) retry_after(rw);
        send_json(rw, static_cast<Http::Code>(status), body);
      });
    };
    const SubmitResult res =
        kafka_ ? kafka_->submit(req.body(), done) : engine_->submit(req.body(), done);
    if (res == SubmitResult::admitted) return;
    reply->answer([res](Http::ResponseWriter& rw) {
      retry_after(rw);
      if (res == SubmitResult::overloaded)
        send_error(rw, Http::Code::Service_Unavailable, "overloaded",
                   "the pipeline is full; retry later");
      else
        send_error(rw, Http::Code::Service_Unavailable, "shutting_down",
                   "the engine is not accepting answers; retry");
    });
  }

  // The storage-backed endpoints: checked here, their storage calls offloaded (offload()).
  void post_quiz(const Http::Request& req, Http::ResponseWriter w) {
    if (!authorized(req, w) || !body_fits(req, w)) return;
    auto d = decode_quiz(req.body());
    if (!d.quiz) {
      return send_error(
          w,
          d.code == "malformed_json" ? Http::Code::Bad_Request : Http::Code::Unprocessable_Entity,
          d.code, d.message, d.field);
    }
    offload(std::move(w), [engine = engine_, quiz = std::move(*d.quiz)](Out& rw) {
      const auto saved = engine->create_quiz(quiz);
      if (!saved.ok()) {
        spdlog::error("storing quiz {} failed: {}", quiz.quiz_id, saved.status().to_string());
        retry_after(rw);
        return send_error(rw, Http::Code::Service_Unavailable, kStorageUnavailable,
                          "the quiz could not be stored; retry");
      }
      const SaveQuizResult res = *saved;
      if (res == SaveQuizResult::conflict)
        return send_error(rw, Http::Code::Conflict, "conflict",
                          "a different quiz with this quiz_id exists", "quiz_id");
      auto view = engine->quiz(quiz.quiz_id);
      if (!view.ok() || !*view) return storage_failed(rw, "quiz", view.status());
      send_json(rw, res == SaveQuizResult::created ? Http::Code::Created : Http::Code::Ok,
                quiz_body((*view)->def, (*view)->state, /*with_answers=*/true));
    });
  }

  // correct_option only to a request carrying the token when one is configured (spec §3).
  void get_quiz(const Http::Request& req, int64_t id, Http::ResponseWriter w) {
    offload(std::move(w), [engine = engine_, id, with_answers = token_ok(req)](Out& rw) {
      auto view = engine->quiz(id);
      if (!view.ok()) return storage_failed(rw, "a quiz", view.status());
      if (!*view) return not_found(rw);
      send_json(rw, Http::Code::Ok, quiz_body((*view)->def, (*view)->state, with_answers));
    });
  }

  void close_quiz(const Http::Request& req, int64_t id, Http::ResponseWriter w) {
    if (!authorized(req, w)) return;
    offload(std::move(w), [engine = engine_, id](Out& rw) {
      auto res = engine->close_quiz(id);
      if (!res.ok()) return storage_failed(rw, "a close request", res.status());
      switch (*res) {
        case CloseResult::unknown:
          return not_found(rw);
        case CloseResult::finalized:
          return send_error(rw, Http::Code::Conflict, "quiz_finalized", "the quiz is finalized",
                            "quiz_id");
        case CloseResult::closed:
        case CloseResult::already_closed:
          break;
      }
      send_json(rw, Http::Code::Accepted, close_body(id));
    });
  }

  void rewards(int64_t id, Http::ResponseWriter w) {
    offload(std::move(w), [engine = engine_, id](Out& rw) {
      auto r = engine->rewards(id);
      if (!r.ok()) return storage_failed(rw, "rewards", r.status());
      if (!*r) return not_found(rw);
      send_json(rw, Http::Code::Ok, rewards_body(id, **r));
    });
  }

  void leaderboard(const Http::Request& req, int64_t id, Http::ResponseWriter w) {
    int64_t limit = 100, offset = 0;
    for (auto [name, out, lo, hi] : {std::tuple{"limit", &limit, int64_t{1}, int64_t{1000}},
                                     std::tuple{"offset", &offset, int64_t{0}, int64_t{1} << 40}}) {
      auto v = req.query().get(name);
      if (!v) continue;
      const std::string& s = *v;
      int64_t x = 0;
      auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
      if (ec != std::errc() || ptr != s.data() + s.size() || x < lo || x > hi)
        return send_error(w, Http::Code::Bad_Request, "invalid_parameter",
                          std::string(name) + " must be an integer from " + std::to_string(lo) +
                              " to " + std::to_string(hi),
                          name);
      *out = x;
    }
    offload(std::move(w), [engine = engine_, id, offset, limit](Out& rw) {
      auto page = engine->leaderboard(id, static_cast<size_t>(offset), static_cast<size_t>(limit));
      if (!page.ok()) return storage_failed(rw, "a leaderboard", page.status());
      if (!*page) return not_found(rw);
      send_json(rw, Http::Code::Ok, leaderboard_body(**page));
    });
  }

  void player(int64_t id, int64_t uid, Http::ResponseWriter w) {
    offload(std::move(w), [engine = engine_, id, uid](Out& rw) {
      auto p = engine->player(id, uid);
      if (!p.ok()) return storage_failed(rw, "a player's standing", p.status());
      if (!*p) return not_found(rw);
      if (!**p)
        return send_error(rw, Http::Code::Not_Found, "not_found", "the player has no standing",
                          "user_id");
      send_json(rw, Http::Code::Ok, player_body(id, ***p));
    });
  }

  Engine* engine_;
  KafkaAnswers* kafka_;  // Kafka mode: answers are produced there instead
  std::shared_ptr<Shared> shared_;
};

}  // namespace

namespace {

// Threads and queue bound of the storage calls of admin and read requests.
constexpr int kStorageCallThreads = 4;
constexpr size_t kStorageCallsQueued = 1024;
// File descriptors kept for everything but client connections (database, Kafka, files).
constexpr int64_t kReservedFds = 256;

// Raises the soft limit on open files to the hard one and returns the connection limit that
// fits under it: at the limit, accept() fails and Pistache 0.0.5's listener spins.
int connection_limit(int configured) {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return configured;
  if (r.rlim_cur != RLIM_INFINITY && (r.rlim_max == RLIM_INFINITY || r.rlim_cur < r.rlim_max)) {
    rlimit raised = r;
    raised.rlim_cur =
        r.rlim_max == RLIM_INFINITY ? std::max<rlim_t>(r.rlim_cur, 1 << 20) : r.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) r = raised;
  }
  if (r.rlim_cur == RLIM_INFINITY) return configured;
  const int64_t fits = static_cast<int64_t>(r.rlim_cur) - kReservedFds;
  if (fits >= configured) return configured;
  const int limit = static_cast<int>(std::max<int64_t>(1, fits));
  spdlog::warn(
      "http: QUIZFLOW_HTTP_MAX_CONNECTIONS={} does not fit the open-file limit ({}); serving at "
      "most {} connections (raise `ulimit -n`)",
      configured, static_cast<int64_t>(r.rlim_cur), limit);
  return limit;
}

}  // namespace

HttpServer::HttpServer(Engine& engine, KafkaAnswers* kafka)
    : engine_(engine), kafka_(kafka), shared_(std::make_shared<Shared>()) {}
HttpServer::~HttpServer() { shutdown(); }

void HttpServer::start() {
  const Config& c = engine_.config();
  std::string host;
  uint16_t port = 0;
  split_host_port(c.http_addr, "QUIZFLOW_HTTP_ADDR", host, port);
  shared_->max_connections = connection_limit(c.http_max_connections);
  shared_->deadlines =
      std::make_unique<ReplyDeadlines>(std::chrono::milliseconds(c.http_request_timeout_ms));
  shared_->calls = std::make_unique<BlockingCalls>(kStorageCallThreads, kStorageCallsQueued);
  Address addr(host, Port(port));
  endpoint_ = std::make_unique<Http::Endpoint>(addr);
  auto opts = Http::Endpoint::options()
                  .threads(c.http_threads)
                  .flags(Tcp::Options::ReuseAddr)
                  .maxRequestSize(static_cast<size_t>(c.http_max_body_bytes) + 16 * 1024)
                  .maxResponseSize(16 << 20)
                  .headerTimeout(std::chrono::milliseconds(c.http_header_timeout_ms))
                  .bodyTimeout(std::chrono::milliseconds(c.http_body_timeout_ms))
                  .keepaliveTimeout(std::chrono::milliseconds(c.http_keepalive_timeout_ms));
  endpoint_->init(opts);
  endpoint_->setHandler(Http::make_handler<Handler>(engine_, kafka_, shared_));
  endpoint_->serveThreaded();
  spdlog::info("http: listening on {}:{} with {} threads, at most {} connections", host,
               this->port(), c.http_threads, shared_->max_connections);
}

uint16_t HttpServer::port() const {
  return endpoint_ ? static_cast<uint16_t>(endpoint_->getPort()) : 0;
}

void HttpServer::refuse_new_work() { shared_->refusing.store(true, std::memory_order_release); }

// The transports stay alive (endpoint_ is reset last) while the deadline and storage-call
// threads may still send through writers that point at them.
void HttpServer::shutdown() {
  if (endpoint_) endpoint_->shutdown();
  if (shared_->deadlines) shared_->deadlines->stop();
  if (shared_->calls && !shared_->calls->stop(std::chrono::seconds(2))) {
    spdlog::warn("http: a storage call still blocks after 2 s (storage hung); left running");
    // Its threads still use the pool and the transports: neither may be destroyed.
    (void)shared_->calls.release();
    (void)endpoint_.release();
  }
  endpoint_.reset();
}

}  // namespace quizflow::ingress
