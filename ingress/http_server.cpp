#include "ingress/http_server.h"

#include <pistache/endpoint.h>
#include <pistache/http.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdlib>
#include <optional>
#include <ostream>
#include <string_view>
#include <vector>

#include "core/log_rate.h"
#include "core/time_util.h"
#include "ingress/json_out.h"
#include "ingress/kafka_answers.h"
#include "pipeline/engine.h"

namespace quizflow::ingress {
namespace {

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

class Handler : public Http::Handler {
 public:
  HTTP_PROTOTYPE(Handler)

  Handler(Engine& engine, KafkaAnswers* kafka, std::shared_ptr<std::atomic<bool>> refusing)
      : engine_(&engine), kafka_(kafka), refusing_(std::move(refusing)) {}

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
    if (parts.size() == 1 && parts[0] == "health" && method == Http::Method::Get) return health(w);
    if (parts.size() == 2 && parts[0] == "monitoring" && parts[1] == "stats" &&
        method == Http::Method::Get)
      return send_json(w, Http::Code::Ok, stats_json(engine_->stats()));
    if (parts.size() == 1 && parts[0] == "metrics" && method == Http::Method::Get) {
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
          return post_quiz(req, w);
        }
        const auto id = parse_id(parts[2]);
        if (!id)
          return send_error(w, Http::Code::Not_Found, "not_found", "no such quiz", "quiz_id");
        if (parts.size() == 4 && parts[3] == "close") {
          if (method != Http::Method::Post) return not_allowed(w);
          return close_quiz(req, *id, w);
        }
        if (method != Http::Method::Get) return not_allowed(w);
        if (parts.size() == 3) return get_quiz(req, *id, w);
        if (parts.size() == 4 && parts[3] == "rewards") return rewards(*id, w);
        if (parts.size() == 4 && parts[3] == "leaderboard") return leaderboard(req, *id, w);
        if (parts.size() == 5 && parts[3] == "players") {
          const auto uid = parse_id(parts[4]);
          if (!uid)
            return send_error(w, Http::Code::Not_Found, "not_found", "no such player", "user_id");
          return player(*id, *uid, w);
        }
      }
    }
    send_error(w, Http::Code::Not_Found, "not_found", "no such endpoint");
  }

  void not_allowed(Http::ResponseWriter& w) {
    send_error(w, Http::Code::Method_Not_Allowed, "method_not_allowed", "method not allowed");
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
    if (refusing_->load(std::memory_order_acquire)) {
      retry_after(w);
      return send_error(w, Http::Code::Service_Unavailable, "shutting_down",
                        "the engine is shutting down; retry");
    }
    auto writer = std::make_shared<Http::ResponseWriter>(std::move(w));
    // The completion runs on an engine thread and must not throw (docs/error-policy.md).
    auto done = [writer](Request& r) noexcept {
      try {
        int status = 200;
        std::string body = answers_body(r, status);
        if (status == 503) retry_after(*writer);
        send_json(*writer, static_cast<Http::Code>(status), body);
      } catch (const std::exception& e) {
        static LogRate rate;
        if (int64_t more = 0; rate.allow(more))
          spdlog::error("http: answering a request failed: {} ({} more held back)", e.what(), more);
      } catch (...) {
        spdlog::error("http: answering a request failed: unknown exception");
      }
    };
    const SubmitResult res =
        kafka_ ? kafka_->submit(req.body(), done) : engine_->submit(req.body(), done);
    if (res == SubmitResult::admitted) return;
    retry_after(*writer);
    if (res == SubmitResult::overloaded)
      send_error(*writer, Http::Code::Service_Unavailable, "overloaded",
                 "the pipeline is full; retry later");
    else
      send_error(*writer, Http::Code::Service_Unavailable, "shutting_down",
                 "the engine is not accepting answers; retry");
  }

  void post_quiz(const Http::Request& req, Http::ResponseWriter& w) {
    if (!authorized(req, w) || !body_fits(req, w)) return;
    auto d = decode_quiz(req.body());
    if (!d.quiz) {
      return send_error(
          w,
          d.code == "malformed_json" ? Http::Code::Bad_Request : Http::Code::Unprocessable_Entity,
          d.code, d.message, d.field);
    }
    const auto saved = engine_->create_quiz(*d.quiz);
    if (!saved.ok()) {
      spdlog::error("storing quiz {} failed: {}", d.quiz->quiz_id, saved.status().to_string());
      retry_after(w);
      return send_error(w, Http::Code::Service_Unavailable, kStorageUnavailable,
                        "the quiz could not be stored; retry");
    }
    const SaveQuizResult res = *saved;
    if (res == SaveQuizResult::conflict)
      return send_error(w, Http::Code::Conflict, "conflict",
                        "a different quiz with this quiz_id exists", "quiz_id");
    auto view = engine_->quiz(d.quiz->quiz_id);
    if (!view.ok() || !*view) return storage_failed(w, "quiz", view.status());
    send_json(w, res == SaveQuizResult::created ? Http::Code::Created : Http::Code::Ok,
              quiz_body((*view)->def, (*view)->state, /*with_answers=*/true));
  }

  // A read or write whose storage call failed: 503, retry later.
  void storage_failed(Http::ResponseWriter& w, const char* what, const Status& st) {
    static LogRate rate;
    if (int64_t more = 0; rate.allow(more))
      spdlog::error("http: reading {} failed: {} ({} more held back)", what, st.to_string(), more);
    retry_after(w);
    send_error(w, Http::Code::Service_Unavailable, kStorageUnavailable,
               "storage is unavailable; retry");
  }

  void not_found(Http::ResponseWriter& w) {
    send_error(w, Http::Code::Not_Found, "not_found", "no such quiz", "quiz_id");
  }

  // correct_option only to a request carrying the token when one is configured (spec §3).
  void get_quiz(const Http::Request& req, int64_t id, Http::ResponseWriter& w) {
    auto view = engine_->quiz(id);
    if (!view.ok()) return storage_failed(w, "a quiz", view.status());
    if (!*view) return not_found(w);
    send_json(w, Http::Code::Ok, quiz_body((*view)->def, (*view)->state, token_ok(req)));
  }

  void close_quiz(const Http::Request& req, int64_t id, Http::ResponseWriter& w) {
    if (!authorized(req, w)) return;
    auto res = engine_->close_quiz(id);
    if (!res.ok()) return storage_failed(w, "a close request", res.status());
    switch (*res) {
      case CloseResult::unknown:
        return not_found(w);
      case CloseResult::finalized:
        return send_error(w, Http::Code::Conflict, "quiz_finalized", "the quiz is finalized",
                          "quiz_id");
      case CloseResult::closed:
      case CloseResult::already_closed:
        break;
    }
    send_json(w, Http::Code::Accepted, close_body(id));
  }

  void rewards(int64_t id, Http::ResponseWriter& w) {
    auto r = engine_->rewards(id);
    if (!r.ok()) return storage_failed(w, "rewards", r.status());
    if (!*r) return not_found(w);
    send_json(w, Http::Code::Ok, rewards_body(id, **r));
  }

  void leaderboard(const Http::Request& req, int64_t id, Http::ResponseWriter& w) {
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
    auto page = engine_->leaderboard(id, static_cast<size_t>(offset), static_cast<size_t>(limit));
    if (!page.ok()) return storage_failed(w, "a leaderboard", page.status());
    if (!*page) return not_found(w);
    send_json(w, Http::Code::Ok, leaderboard_body(**page));
  }

  void player(int64_t id, int64_t uid, Http::ResponseWriter& w) {
    auto p = engine_->player(id, uid);
    if (!p.ok()) return storage_failed(w, "a player's standing", p.status());
    if (!*p) return not_found(w);
    if (!**p)
      return send_error(w, Http::Code::Not_Found, "not_found", "the player has no standing",
                        "user_id");
    send_json(w, Http::Code::Ok, player_body(id, ***p));
  }

  Engine* engine_;
  KafkaAnswers* kafka_;  // Kafka mode: answers are produced there instead
  std::shared_ptr<std::atomic<bool>> refusing_;
};

}  // namespace

HttpServer::HttpServer(Engine& engine, KafkaAnswers* kafka) : engine_(engine), kafka_(kafka) {}
HttpServer::~HttpServer() { shutdown(); }

void HttpServer::start() {
  const Config& c = engine_.config();
  std::string host;
  uint16_t port = 0;
  split_host_port(c.http_addr, "QUIZFLOW_HTTP_ADDR", host, port);
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
  endpoint_->setHandler(Http::make_handler<Handler>(engine_, kafka_, refusing_));
  endpoint_->serveThreaded();
  spdlog::info("http: listening on {}:{} with {} threads", host, this->port(), c.http_threads);
}

uint16_t HttpServer::port() const {
  return endpoint_ ? static_cast<uint16_t>(endpoint_->getPort()) : 0;
}

void HttpServer::refuse_new_work() { refusing_->store(true, std::memory_order_release); }

void HttpServer::shutdown() {
  if (!endpoint_) return;
  endpoint_->shutdown();
  endpoint_.reset();
}

}  // namespace quizflow::ingress
