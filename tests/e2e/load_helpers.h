// Helpers shared by the end-to-end load tests (flood_test.cpp, drain_test.cpp): a `quizflow serve`
// child process that can be signalled and measured, a raw keep-alive HTTP connection that reports
// exactly how each request ended (no hidden retry, unlike tools/http_client.h, so a request the
// server never answered cannot be masked by a resend), answer bodies, and psql queries.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tools/http_client.h"

extern char** environ;

namespace quizflow::loadtest {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

inline int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

inline int64_t ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

inline std::string rfc3339(int64_t ms) {
  const time_t secs = static_cast<time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Checks QUIZFLOW_BIN and DATABASE_URL; returns what is missing (empty when both are set).
inline std::string check_environment() {
  const char* bin = std::getenv("QUIZFLOW_BIN");
  const char* db = std::getenv("DATABASE_URL");
  if (bin == nullptr || *bin == '\0')
    return "QUIZFLOW_BIN is not set: point it at the built quizflow binary, e.g. "
           "QUIZFLOW_BIN=$PWD/build/quizflow";
  if (!std::filesystem::exists(bin)) return std::string("QUIZFLOW_BIN=") + bin + " does not exist";
  if (db == nullptr || *db == '\0')
    return "DATABASE_URL is not set: the load tests need a PostgreSQL (e.g. source /tmp/pgenv.sh)";
  if (std::string(db).find('\'') != std::string::npos)
    return "DATABASE_URL contains a single quote; the psql helper cannot quote it";
  return {};
}

// A fresh temporary directory for server logs and port files.
inline std::string make_temp_dir(const std::string& tag) {
  std::string tmpl = (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : "/tmp") +
                     "/quizflow-" + tag + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return {};
  return tmpl;
}

// How a child process ended.
struct ExitInfo {
  bool ended = false;   // false: still running when the wait gave up
  bool exited = false;  // normal exit (then `code`), else killed by `signal`
  int code = -1;
  int signal = 0;
  int64_t waited_ms = 0;  // from the start of the wait until the end was observed

  std::string describe() const {
    if (!ended) return "still running after " + std::to_string(waited_ms) + " ms";
    if (exited)
      return "exit code " + std::to_string(code) + " after " + std::to_string(waited_ms) + " ms";
    return "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ") after " +
           std::to_string(waited_ms) + " ms";
  }
};

// A `quizflow serve` child process with its output in a file.
class ServerProcess {
 public:
  // `env` entries override the inherited environment; a nullopt value removes the variable.
  using Env = std::vector<std::pair<std::string, std::optional<std::string>>>;

  ServerProcess(std::string bin, const std::string& dir, const std::string& name, Env env)
      : bin_(std::move(bin)),
        port_file_(dir + "/" + name + ".port"),
        log_file_(dir + "/" + name + ".log"),
        env_(std::move(env)) {}

  ~ServerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
  }

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts the process and waits until it listens and /health answers 200. Returns an empty
  // string on success, otherwise what went wrong.
  std::string start() {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string kv = *e;
      const std::string key = kv.substr(0, kv.find('='));
      if (std::none_of(env_.begin(), env_.end(), [&](const auto& o) { return o.first == key; }))
        env_strings.push_back(kv);
    }
    for (const auto& [k, v] : env_)
      if (v) env_strings.push_back(k + "=" + *v);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = {bin_, "serve", "--port-file", port_file_};
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);

    std::filesystem::remove(port_file_);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    const int rc = posix_spawn(&pid_, bin_.c_str(), &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      pid_ = -1;
      return "cannot start " + bin_ + ": " + std::strerror(rc);
    }

    const auto deadline = Clock::now() + 30s;
    while (port_ == 0) {
      if (std::string why = exited_early(); !why.empty()) return why;
      const std::string text = read_text_file(port_file_);
      if (!text.empty() && text.back() == '\n') port_ = static_cast<uint16_t>(std::stoi(text));
      if (port_ != 0) break;
      if (Clock::now() > deadline) return "no port in " + port_file_ + " after 30 s";
      std::this_thread::sleep_for(20ms);
    }
    std::string last;
    while (Clock::now() < deadline) {
      if (std::string why = exited_early(); !why.empty()) return why;
      try {
        tools::HttpClient c("127.0.0.1", port_, 2s);
        const tools::HttpResponse r = c.request("GET", "/health");
        if (r.status == 200) return {};
        last = "HTTP " + std::to_string(r.status) + " " + r.body;
      } catch (const std::exception& e) {
        last = e.what();
      }
      std::this_thread::sleep_for(50ms);
    }
    return "GET /health never answered 200 within 30 s; last: " + last;
  }

  bool signal(int sig) const { return pid_ > 0 && ::kill(pid_, sig) == 0; }

  // Waits up to `limit` for the process to end (polling every 2 ms). When it has not ended by
  // then it is left running (the destructor kills it).
  ExitInfo wait_exit(std::chrono::milliseconds limit) {
    ExitInfo info;
    const auto t0 = Clock::now();
    const auto deadline = t0 + limit;
    for (;;) {
      if (pid_ <= 0) {
        info.ended = true;
        info.exited = exited_;
        info.code = code_;
        info.signal = signal_;
        return info;
      }
      int st = 0;
      const pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        end_time_ = Clock::now();
        pid_ = -1;
        exited_ = WIFEXITED(st);
        code_ = exited_ ? WEXITSTATUS(st) : -1;
        signal_ = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
        info.waited_ms = ms_between(t0, end_time_);
        continue;
      }
      if (Clock::now() > deadline) {
        info.waited_ms = ms_between(t0, Clock::now());
        return info;
      }
      std::this_thread::sleep_for(2ms);
    }
  }

  // Reads "VmRSS" / "VmHWM" (kB) from /proc/<pid>/status; -1 when unavailable.
  int64_t status_kb(const char* field) const {
    if (pid_ <= 0) return -1;
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    const std::string key = std::string(field) + ":";
    while (std::getline(in, line)) {
      if (line.compare(0, key.size(), key) != 0) continue;
      return std::strtoll(line.c_str() + key.size(), nullptr, 10);
    }
    return -1;
  }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  Clock::time_point end_time() const { return end_time_; }
  std::string log() const { return read_text_file(log_file_); }
  const std::string& log_path() const { return log_file_; }

 private:
  std::string exited_early() {
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) != pid_) return {};
    pid_ = -1;
    return "the server exited during start-up (" +
           (WIFEXITED(st) ? "exit code " + std::to_string(WEXITSTATUS(st))
                          : "signal " + std::to_string(WTERMSIG(st))) +
           ")\n" + log();
  }

  std::string bin_, port_file_, log_file_;
  Env env_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  bool exited_ = false;
  int code_ = -1, signal_ = 0;
  Clock::time_point end_time_{};
};

inline void print_log_tail(const ServerProcess& s, size_t max_bytes = 24 * 1024) {
  std::string text = s.log();
  if (text.size() > max_bytes) text = "[…]\n" + text.substr(text.size() - max_bytes);
  std::fprintf(stderr, "---- server output (%s) ----\n%s---- end of server output ----\n",
               s.log_path().c_str(), text.c_str());
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

// A quiz open from a minute ago for an hour, three questions.
inline std::string quiz_body(int64_t quiz_id, const std::string& title) {
  const int64_t now = wall_ms();
  return R"({"quiz_id":)" + std::to_string(quiz_id) + R"(,"title":")" + title +
         R"(","opens_at":")" + rfc3339(now - 60'000) + R"(","closes_at":")" +
         rfc3339(now + 3'600'000) +
         R"(","questions":[{"question_id":1,"option_count":4,"correct_option":2,"points":1000,)"
         R"("time_limit_ms":20000},{"question_id":2,"option_count":3,"correct_option":0,)"
         R"("points":500,"time_limit_ms":10000},{"question_id":3,"option_count":2,)"
         R"("correct_option":1,"points":100,"time_limit_ms":5000}]})";
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
  rapidjson::Document d;
  d.Parse(body.c_str(), body.size());
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
  const char* db = std::getenv("DATABASE_URL");
  if (db == nullptr || *db == '\0') {
    error = "DATABASE_URL is not set";
    return lines;
  }
  if (sql.find('"') != std::string::npos || sql.find('$') != std::string::npos ||
      sql.find('`') != std::string::npos || sql.find('\\') != std::string::npos) {
    error = "the SQL must not contain \" $ ` or \\";
    return lines;
  }
  const std::string cmd =
      std::string("psql -X -q -A -t -v ON_ERROR_STOP=1 -d '") + db + "' -c \"" + sql + "\" 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    error = "popen(psql) failed: " + std::string(std::strerror(errno));
    return lines;
  }
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = ::pclose(p);
  if (st != 0) {
    error = "psql failed (status " + std::to_string(st) + "): " + out.substr(0, 2000);
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
    d.Parse(r.body.c_str(), r.body.size());
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
