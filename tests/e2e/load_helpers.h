// Helpers shared by the end-to-end load tests (flood_test.cpp, drain_test.cpp), on top of
// server_fixture.h (whose ServerProcess can be signalled and measured): a raw keep-alive HTTP
// connection that reports exactly how each request ended (no hidden retry, unlike
// tools/http_client.h, so a request the server never answered cannot be masked by a resend),
// answer bodies, and psql queries.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <rapidjson/document.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "e2e/server_fixture.h"
#include "tools/http_client.h"
#include "tools/timestamps.h"

namespace quizflow::loadtest {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using qf_e2e::Env;
using qf_e2e::ExitInfo;
using qf_e2e::print_log;
using qf_e2e::ServerProcess;
using tools::rfc3339;
using tools::wall_ms;

inline double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

inline int64_t ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

// Checks QUIZFLOW_BIN and DATABASE_URL; returns what is missing (empty when both are set).
inline std::string check_environment() {
  std::string error;
  if (qf_e2e::quizflow_bin(error).empty()) return error;
  const std::string db = qf_e2e::database_url(error);
  if (db.empty()) return error;
  if (db.find('\'') != std::string::npos)
    return "DATABASE_URL contains a single quote; the psql helper cannot quote it";
  return {};
}

// A fresh temporary directory "quizflow-<tag>-…" for server logs and port files; empty (errno set)
// when mkdtemp failed.
inline std::string make_temp_dir(const std::string& tag) {
  try {
    return qf_e2e::make_temp_dir("quizflow-" + tag);
  } catch (const std::runtime_error&) {
    return {};
  }
}

// How one request on a RawConn ended.
enum class Outcome {
  response,                // a complete HTTP response was read
  connect_refused,         // connect() got ECONNREFUSED: nothing listens any more
  connect_failed,          // connect() failed otherwise
  send_failed,             // the connection broke before the whole request was sent
  closed_before_response,  // sent completely; EOF or reset before any response byte
  closed_mid_response,     // the connection ended inside a response
  timeout,                 // no (complete) response within the timeout
  protocol_error,          // unparsable response
};

inline const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::response:
      return "response";
    case Outcome::connect_refused:
      return "connect_refused";
    case Outcome::connect_failed:
      return "connect_failed";
    case Outcome::send_failed:
      return "send_failed";
    case Outcome::closed_before_response:
      return "closed_before_response";
    case Outcome::closed_mid_response:
      return "closed_mid_response";
    case Outcome::timeout:
      return "timeout";
    case Outcome::protocol_error:
      return "protocol_error";
  }
  return "?";
}

struct RawResult {
  Outcome outcome = Outcome::protocol_error;
  int status = 0;
  bool has_retry_after = false;
  std::string head;  // status line and headers, as received
  std::string body;
  std::string error;            // errno text or what was wrong
  bool new_connection = false;  // this request opened the connection
  Clock::time_point started{}, sent{}, ended{};
};

// One keep-alive HTTP/1.1 connection to 127.0.0.1:port. Every request is sent exactly once: when
// the connection breaks, the outcome says how, and the next request opens a new connection.
class RawConn {
 public:
  RawConn(uint16_t port, std::chrono::milliseconds timeout) : port_(port), timeout_(timeout) {}
  ~RawConn() { close(); }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
  }

  RawResult request(const char* method, const std::string& path, const std::string& body) {
    RawResult r;
    r.started = Clock::now();
    const auto deadline = r.started + timeout_;
    if (fd_ < 0) {
      r.new_connection = true;
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) return fail(r, Outcome::connect_failed, "socket: " + errno_text());
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      timeval tv{};
      tv.tv_sec = static_cast<time_t>(timeout_.count() / 1000);
      tv.tv_usec = static_cast<suseconds_t>((timeout_.count() % 1000) * 1000);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds connect()
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port_);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        const int err = errno;
        ::close(fd);
        if (err == ECONNREFUSED) return fail(r, Outcome::connect_refused, std::strerror(err));
        if (err == EINPROGRESS || err == EAGAIN)
          return fail(r, Outcome::timeout, "connect timed out");
        return fail(r, Outcome::connect_failed, std::strerror(err));
      }
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
      fd_ = fd;
    }
    std::string req;
    req.reserve(200 + body.size());
    req.append(method).append(" ").append(path).append(" HTTP/1.1\r\nHost: 127.0.0.1:");
    req.append(std::to_string(port_)).append("\r\nConnection: keep-alive\r\nContent-Length: ");
    req.append(std::to_string(body.size())).append("\r\n");
    if (!body.empty()) req.append("Content-Type: application/json\r\n");
    req.append("\r\n").append(body);

    size_t off = 0;
    while (off < req.size()) {
      const ssize_t n = ::send(fd_, req.data() + off, req.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      const int err = errno;
      if (n < 0 && err == EINTR) continue;
      if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
        if (!wait_fd(POLLOUT, deadline))
          return fail(r, Outcome::timeout, "send timed out after " + sent_text(off, req.size()));
        continue;
      }
      return fail(r, Outcome::send_failed,
                  "send: " + errno_text(err) + " after " + sent_text(off, req.size()));
    }
    r.sent = Clock::now();

    // Head.
    size_t head_end;
    while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos) {
      const int got = fill(deadline, r);
      if (got > 0) continue;
      if (got == 0) {
        std::string why =
            buf_.empty() ? "closed before any response byte" : "closed inside the response head";
        if (!r.error.empty()) why += " (" + r.error + ")";
        return fail(r,
                    buf_.empty() ? Outcome::closed_before_response : Outcome::closed_mid_response,
                    std::move(why));
      }
      return r;  // fill() filled in the failure
    }
    const std::string_view head(buf_.data(), head_end);
    r.head.assign(head);
    if (head.size() < 12 || head.substr(0, 5) != "HTTP/")
      return fail(r, Outcome::protocol_error,
                  "bad status line: " + std::string(head.substr(0, 80)));
    auto [p, ec] = std::from_chars(head.data() + 9, head.data() + 12, r.status);
    if (ec != std::errc()) return fail(r, Outcome::protocol_error, "bad status code");
    size_t content_length = 0;
    bool have_length = false, close_after = false;
    size_t pos = head.find("\r\n");
    while (pos != std::string_view::npos && pos < head.size()) {
      const size_t start = pos + 2;
      pos = head.find("\r\n", start);
      std::string line(
          head.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      if (name == "content-length") {
        have_length = true;
        content_length = std::strtoull(value.c_str(), nullptr, 10);
      } else if (name == "retry-after") {
        r.has_retry_after = !value.empty();
      } else if (name == "connection") {
        for (char& c : value) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        close_after = value.find("close") != std::string::npos;
      } else if (name == "transfer-encoding") {
        return fail(r, Outcome::protocol_error, "transfer-encoding is not supported here");
      }
    }
    if (!have_length) return fail(r, Outcome::protocol_error, "response without Content-Length");
    buf_.erase(0, head_end + 4);
    while (buf_.size() < content_length) {
      const int got = fill(deadline, r);
      if (got > 0) continue;
      if (got == 0)
        return fail(r, Outcome::closed_mid_response,
                    "closed after " + std::to_string(buf_.size()) + " of " +
                        std::to_string(content_length) + " body bytes");
      return r;
    }
    r.body.assign(buf_, 0, content_length);
    buf_.erase(0, content_length);
    r.outcome = Outcome::response;
    r.ended = Clock::now();
    if (close_after) close();
    return r;
  }

 private:
  static std::string errno_text(int err = errno) { return std::strerror(err); }
  static std::string sent_text(size_t off, size_t total) {
    return std::to_string(off) + " of " + std::to_string(total) + " request bytes";
  }

  RawResult& fail(RawResult& r, Outcome o, std::string why) {
    r.outcome = o;
    r.error = std::move(why);
    r.ended = Clock::now();
    close();
    return r;
  }

  bool wait_fd(short events, Clock::time_point deadline) {
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd pfd{fd_, events, 0};
      const int n = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (n > 0) return true;
      if (n < 0 && errno != EINTR) return true;  // let the next call report the error
    }
  }

  // >0 bytes appended; 0 orderly close or reset by the peer; <0 failure already recorded in r.
  int fill(Clock::time_point deadline, RawResult& r) {
    char tmp[65536];
    for (;;) {
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n > 0) {
        buf_.append(tmp, static_cast<size_t>(n));
        return 1;
      }
      if (n == 0) return 0;
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        if (!wait_fd(POLLIN, deadline)) {
          fail(r, Outcome::timeout,
               "no complete response within " + std::to_string(timeout_.count()) + " ms (" +
                   std::to_string(buf_.size()) + " bytes received)");
          return -1;
        }
        continue;
      }
      if (err == ECONNRESET || err == ECONNABORTED || err == EPIPE) {
        r.error = "recv: " + errno_text(err);
        return 0;
      }
      fail(r, Outcome::protocol_error, "recv: " + errno_text(err));
      return -1;
    }
  }

  uint16_t port_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  std::string buf_;
};

// True when a fresh connect() to 127.0.0.1:port is refused (nothing listens).
inline bool connect_refused(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool refused =
      ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno == ECONNREFUSED;
  ::close(fd);
  return refused;
}

// A quiz open from a minute ago for an hour, three questions, no rewards.
inline std::string quiz_body(int64_t quiz_id, const std::string& title) {
  const int64_t now = wall_ms();
  return qf_e2e::quiz_json(quiz_id, title, now - 60'000, now + 3'600'000,
                           {{1, 4, 2, 1000, 20000}, {2, 3, 0, 500, 10000}, {3, 2, 1, 100, 5000}},
                           /*rewards=*/{});
}

// Creates the quiz; returns an empty string or what went wrong.
inline std::string create_quiz(uint16_t port, int64_t quiz_id, const std::string& title) {
  try {
    tools::HttpClient c("127.0.0.1", port, 10s);
    const auto r = c.request("POST", "/v1/quizzes", quiz_body(quiz_id, title));
    if (r.status == 201) return {};
    return "POST /v1/quizzes: HTTP " + std::to_string(r.status) + " " + r.body;
  } catch (const std::exception& e) {
    return std::string("POST /v1/quizzes: ") + e.what();
  }
}

// Quiz ids unlikely to clash with other runs sharing the database (ms × 1000 + pid % 1000).
inline int64_t unique_quiz_id() { return wall_ms() * 1000 + (::getpid() % 1000); }

// Appends `{"answers":[…]}` with `count` answers whose event ids are `<prefix><first + i>`, all
// valid for the quiz of quiz_body(). Ids are appended to `ids` in the same order.
inline void build_batch(std::string& out, std::vector<std::string>& ids, const std::string& prefix,
                        int64_t quiz_id, uint64_t first, int count) {
  out.clear();
  ids.clear();
  out.reserve(static_cast<size_t>(count) * 200 + 16);
  const std::string at = rfc3339(wall_ms());
  const std::string quiz = std::to_string(quiz_id);
  out += R"({"answers":[)";
  for (int i = 0; i < count; ++i) {
    const uint64_t seq = first + static_cast<uint64_t>(i);
    std::string id = prefix + std::to_string(seq);
    const int question = static_cast<int>(seq % 3) + 1;
    const int options = question == 1 ? 4 : question == 2 ? 3 : 2;
    const int limit = question == 1 ? 20000 : question == 2 ? 10000 : 5000;
    if (i) out += ',';
    out += R"({"event_id":")";
    out += id;
    out += R"(","quiz_id":)";
    out += quiz;
    out += R"(,"user_id":)";
    out += std::to_string((seq / 3) % 2000 + 1);
    out += R"(,"question_id":)";
    out += std::to_string(question);
    out += R"(,"option_id":)";
    out += std::to_string(static_cast<int>((seq * 7) % static_cast<uint64_t>(options)));
    out += R"(,"answered_at":")";
    out += at;
    out += R"(","elapsed_ms":)";
    out += std::to_string(static_cast<int>((seq * 131) % static_cast<uint64_t>(limit)));
    out += '}';
    ids.push_back(std::move(id));
  }
  out += "]}";
}

// Per-item verdicts of a POST /v1/answers response body, checked against the ids sent.
struct BatchVerdicts {
  bool parsed = false;
  std::string problem;           // set when the body does not match what was sent
  std::vector<size_t> accepted;  // indexes into the ids sent
  size_t duplicates = 0, rejected = 0;
  std::string first_rejection;  // code and message of the first rejected item
};

inline BatchVerdicts parse_verdicts(const std::string& body, const std::vector<std::string>& ids) {
  BatchVerdicts v;
  const rapidjson::Document d = qf_e2e::parse_json(body);
  if (d.HasParseError() || !d.IsObject()) {
    v.problem = "body is not a JSON object";
    return v;
  }
  auto it = d.FindMember("results");
  if (it == d.MemberEnd() || !it->value.IsArray()) {
    v.problem = "no results array";
    return v;
  }
  v.parsed = true;
  const auto& arr = it->value;
  if (arr.Size() != ids.size()) {
    v.problem =
        std::to_string(arr.Size()) + " results for " + std::to_string(ids.size()) + " answers";
    return v;
  }
  for (rapidjson::SizeType i = 0; i < arr.Size(); ++i) {
    const auto& item = arr[i];
    if (!item.IsObject() || !item.HasMember("event_id") || !item["event_id"].IsString() ||
        !item.HasMember("status") || !item["status"].IsString()) {
      v.problem = "result " + std::to_string(i) + " lacks event_id/status";
      return v;
    }
    if (ids[i] != item["event_id"].GetString()) {
      v.problem = "result " + std::to_string(i) + " is for " + item["event_id"].GetString() +
                  ", expected " + ids[i];
      return v;
    }
    const std::string status = item["status"].GetString();
    if (status == "accepted") {
      v.accepted.push_back(i);
    } else if (status == "duplicate") {
      ++v.duplicates;
    } else {
      ++v.rejected;
      if (v.first_rejection.empty()) {
        v.first_rejection = status;
        for (const char* k : {"code", "message"})
          if (item.HasMember(k) && item[k].IsString())
            v.first_rejection += std::string(" ") + item[k].GetString();
      }
    }
  }
  return v;
}

// Runs one SQL statement through psql against DATABASE_URL; returns the unaligned, tuples-only
// output lines. `error` is set (and the lines are empty) when psql failed.
inline std::vector<std::string> psql_lines(const std::string& sql, std::string& error) {
  std::vector<std::string> lines;
  const std::string db = qf_e2e::database_url(error);
  if (db.empty()) return lines;
  if (sql.find('"') != std::string::npos || sql.find('$') != std::string::npos ||
      sql.find('`') != std::string::npos || sql.find('\\') != std::string::npos) {
    error = "the SQL must not contain \" $ ` or \\";
    return lines;
  }
  const std::string cmd =
      "psql -X -q -A -t -v ON_ERROR_STOP=1 -d '" + db + "' -c \"" + sql + "\" 2>&1";
  int exit_code = 0;
  const std::string out = qf_e2e::shell(cmd, exit_code);
  if (exit_code != 0) {
    error = "psql failed (exit code " + std::to_string(exit_code) + "): " + out.substr(0, 2000);
    return lines;
  }
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    if (end > start) lines.emplace_back(out, start, end - start);
    start = end + 1;
  }
  return lines;
}

// GET /monitoring/stats as a parsed document (IsObject() false when it failed).
inline rapidjson::Document get_stats(uint16_t port, std::string& error) {
  rapidjson::Document d;
  try {
    tools::HttpClient c("127.0.0.1", port, 5s);
    const auto r = c.request("GET", "/monitoring/stats");
    if (r.status != 200) {
      error = "GET /monitoring/stats: HTTP " + std::to_string(r.status) + " " + r.body;
      return d;
    }
    d = qf_e2e::parse_json(r.body);
    if (d.HasParseError() || !d.IsObject()) error = "GET /monitoring/stats: not JSON: " + r.body;
  } catch (const std::exception& e) {
    error = std::string("GET /monitoring/stats: ") + e.what();
  }
  return d;
}

// d[a][b] as an integer, or INT64_MIN when absent.
inline int64_t stat_int(const rapidjson::Value& d, const char* a, const char* b) {
  if (!d.IsObject() || !d.HasMember(a) || !d[a].IsObject() || !d[a].HasMember(b)) return INT64_MIN;
  const auto& v = d[a][b];
  if (v.IsInt64()) return v.GetInt64();
  if (v.IsDouble()) return static_cast<int64_t>(v.GetDouble());
  return INT64_MIN;
}

}  // namespace quizflow::loadtest
