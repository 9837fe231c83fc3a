// End-to-end: docker/nginx.conf in front of the built quizflow binary (issue 13, item 5). Pistache
// 0.0.5, the engine's HTTP server, mishandles hostile HTTP (docs/operations.md, "Putting nginx in
// front"); each such input is sent here through nginx over a raw socket, and nginx must answer it
// itself with a clean JSON error (spec §3's body; a 4xx, 503 for the connection limit) within a
// bounded time, or cut a slow client off at its timeout, while the engine stays healthy and good
// answers sent beside them are accepted and stored. Bodies of rejected requests carry valid answers
// with event ids of their own: none of them may ever reach the database.
//
// nginx runs the shipped file with three lines rewritten (the `listen 8080;` and `server
// quizflow:8000 max_fails=0;` markers, and client_header_timeout 5s → 2s so that the slow-header
// case takes 2 s); every other limit is the shipped one. Two further copies point at a closed port
// and at a listener that never answers (proxy_read_timeout 1s) for the 502 and 504 pages.
//
// Needs Debian's nginx (/usr/sbin/nginx, or `nginx` on PATH): the test fails, not skips, without
// it. Client addresses: 127.0.0.1 for most cases; 127.0.0.3 for the per-client connection limit
// (no other case's lingering connection can count against it) and 127.0.0.2 for the client served
// beside it; 127.0.0.10 to .14 to fill the total connection limit. Logs of the engine and nginx go
// to a temporary directory, kept when a test fails.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "e2e/server_fixture.h"

namespace {

using namespace qf_e2e;
using Clock = std::chrono::steady_clock;

constexpr const char* kToken = "nginx-front-token-7";
constexpr int kPerClientLimit = 64;   // limit_conn qf_per_client in docker/nginx.conf
constexpr int kTotalLimit = 256;      // limit_conn qf_total
constexpr size_t kMaxBody = 1 << 20;  // client_max_body_size 1m = QUIZFLOW_HTTP_MAX_BODY default
// An answer nginx writes itself must start within this time of the request being sent (they take
// well under 10 ms; the rest is room for a shared 2-core machine).
constexpr int64_t kPromptMs = 2000;

int64_t ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------------
// nginx: the binary, the configuration, the process
// ---------------------------------------------------------------------------------------------

std::string find_nginx(std::string& error) {
  if (::access("/usr/sbin/nginx", X_OK) == 0) return "/usr/sbin/nginx";
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "");
  std::string d;
  while (std::getline(dirs, d, ':'))
    if (!d.empty() && ::access((d + "/nginx").c_str(), X_OK) == 0) return d + "/nginx";
  error =
      "nginx is not installed (neither /usr/sbin/nginx nor nginx on PATH): this test runs Debian's "
      "nginx in front of the engine; scripts/setup installs it (apt-get install nginx)";
  return {};
}

// The shipped configuration: $QUIZFLOW_NGINX_CONF, else docker/nginx.conf of the source tree the
// binary under test was built in (QUIZFLOW_BIN is <tree>/<build dir>/quizflow; the build files name
// sources relative to the build directory, so __FILE__ does not help).
std::string shipped_conf(std::string& error) {
  std::vector<std::filesystem::path> candidates;
  if (const char* env = std::getenv("QUIZFLOW_NGINX_CONF"); env != nullptr && *env != '\0') {
    candidates.emplace_back(env);
  } else if (const char* bin = std::getenv("QUIZFLOW_BIN"); bin != nullptr && *bin != '\0') {
    std::filesystem::path dir = std::filesystem::absolute(bin).parent_path();
    for (int up = 0; up < 3 && !dir.empty(); ++up, dir = dir.parent_path())
      candidates.push_back(dir.parent_path() / "docker" / "nginx.conf");
  }
  std::string tried;
  for (const auto& path : candidates) {
    std::string text = read_file(path.string());
    if (!text.empty()) return text;
    tried.append(" ").append(path.string());  // (not " " + string: GCC 12 -O3 -Wrestrict)
  }
  error = "cannot find docker/nginx.conf (set QUIZFLOW_NGINX_CONF); tried:" + tried;
  return {};
}

// Replaces the one occurrence of `from` in `text`; an error when there is not exactly one (the
// markers of docker/nginx.conf must stay as they are).
bool replace_once(std::string& text, const std::string& from, const std::string& to,
                  std::string& error) {
  const size_t at = text.find(from);
  if (at == std::string::npos || text.find(from, at + 1) != std::string::npos) {
    error = "docker/nginx.conf must contain \"" + from + "\" exactly once";
    return false;
  }
  text.replace(at, from.size(), to);
  return true;
}

// The shipped configuration listening on 127.0.0.1:`port` in front of 127.0.0.1:`upstream`, with
// the slow-header timeout shortened to 2 s and the replacements of `more` applied.
std::string test_conf(const std::string& shipped, uint16_t port, uint16_t upstream,
                      const std::vector<std::pair<std::string, std::string>>& more,
                      std::string& error) {
  std::string c = shipped;
  const bool ok =
      replace_once(c, "listen 8080;", "listen 127.0.0.1:" + std::to_string(port) + ";", error) &&
      replace_once(c, "server quizflow:8000 max_fails=0;",
                   "server 127.0.0.1:" + std::to_string(upstream) + " max_fails=0;", error) &&
      replace_once(c, "client_header_timeout 5s;", "client_header_timeout 2s;", error) &&
      std::all_of(more.begin(), more.end(),
                  [&](const auto& r) { return replace_once(c, r.first, r.second, error); });
  return ok ? c : std::string();
}

// The processes whose parent is `pid` (nginx's workers).
std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const std::string stat = read_file(e.path().string() + "/stat");
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(paren + 1));
    std::string state;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == pid) out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

// An nginx master (daemon off) with its prefix directory: configuration, pid file, temporary
// files; access log (stdout) and error log (stderr) in files beside it.
class NginxProcess {
 public:
  NginxProcess(std::string bin, std::string prefix)
      : bin_(std::move(bin)), dir_(std::move(prefix)) {}
  ~NginxProcess() { stop(); }
  NginxProcess(const NginxProcess&) = delete;
  NginxProcess& operator=(const NginxProcess&) = delete;

  // Writes `conf`, starts nginx and waits until it answers on 127.0.0.1:`port` (any HTTP answer).
  // Returns an empty string on success, otherwise what went wrong.
  std::string start(const std::string& conf, uint16_t port) {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) return "cannot make " + dir_ + ": " + ec.message();
    // Workers run as www-data when nginx starts as root: they must reach the temporary
    // directories nginx makes (for them) inside the prefix.
    ::chmod(dir_.c_str(), 0755);
    write_file(dir_ + "/nginx.conf", conf);
    try {
      pid_ = spawn({bin_, "-p", dir_ + "/", "-c", dir_ + "/nginx.conf"}, {}, dir_ + "/access.log",
                   dir_ + "/error.log");
    } catch (const std::exception& e) {
      return e.what();
    }
    port_ = port;
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    std::string last;
    while (Clock::now() < deadline) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return "nginx exited during start-up (" + describe_status(st) + "):\n" + error_log();
      }
      try {
        HttpClient c("127.0.0.1", port_, std::chrono::seconds(2));
        // An internal location: nginx answers 404 itself, without asking the engine.
        if (c.request("GET", "/_nginx/error/404").status == 404) return {};
      } catch (const std::exception& e) {
        last = e.what();
      }
      std::this_thread::sleep_for(50ms);
    }
    return "nginx did not answer on port " + std::to_string(port_) + " within 15 s (" + last +
           "):\n" + error_log();
  }

  // Fast shutdown (SIGTERM: the master stops its workers and exits); whatever is left after 10 s
  // is killed, workers included.
  void stop() {
    if (pid_ <= 0) return;
    const std::vector<pid_t> workers = children_of(pid_);
    ::kill(pid_, SIGTERM);
    if (!wait_for(pid_, std::chrono::seconds(10))) {
      for (const pid_t w : workers) ::kill(w, SIGKILL);
      std::fprintf(stderr, "nginx (pid %d) did not stop on SIGTERM within 10 s: killed\n", pid_);
    }
    pid_ = -1;
  }

  bool running() {
    if (pid_ <= 0) return false;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }

  uint16_t port() const { return port_; }
  std::string error_log() const { return read_file(dir_ + "/error.log"); }
  std::string access_log() const { return read_file(dir_ + "/access.log"); }

 private:
  std::string bin_, dir_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

// Lines of an nginx error log that tell of a failure of nginx itself (a worker that crashed, a
// resource it could not get), not of a client's bad request. Not counted: worker_rlimit_nofile
// refused by a hard limit below it (nginx started without root; it then keeps the limit it has).
std::string nginx_failures(const std::string& log) {
  std::istringstream in(log);
  std::string line, out;
  while (std::getline(in, line)) {
    if (line.find("setrlimit(RLIMIT_NOFILE") != std::string::npos) continue;
    for (const char* level : {"[alert]", "[emerg]", "[crit]"})
      if (line.find(level) != std::string::npos) out += line + "\n";
  }
  return out;
}

// Lines of the engine's log that tell of a crash or an internal error (spdlog's "error" and
// "critical" levels, an uncaught exception, a sanitizer report).
std::string engine_failures(const std::string& log) {
  std::istringstream in(log);
  std::string line, out;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string time, level;
    words >> time >> level;
    if (level == "error" || level == "critical" ||
        line.find("terminate called") != std::string::npos ||
        line.find("bad_alloc") != std::string::npos || line.find("Sanitizer") != std::string::npos)
      out += line + "\n";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP over a socket
// ---------------------------------------------------------------------------------------------

struct RawResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;

  std::string header(const std::string& name) const {
    for (const auto& [k, v] : headers)
      if (k == name) return v;
    return "<none>";
  }
  std::string show() const {
    return "HTTP " + std::to_string(status) + " body: " + body.substr(0, 600);
  }
};

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  const size_t e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// The complete responses at the start of `bytes` (bodies framed by Content-Length or chunked);
// stops at the first incomplete or unparsable one.
std::vector<RawResponse> parse_responses(const std::string& bytes) {
  std::vector<RawResponse> out;
  size_t pos = 0;
  for (;;) {
    const size_t end = bytes.find("\r\n\r\n", pos);
    if (end == std::string::npos) return out;
    RawResponse r;
    std::istringstream head(bytes.substr(pos, end - pos));
    std::string line;
    std::getline(head, line);
    if (line.rfind("HTTP/1.", 0) != 0 || line.size() < 12) return out;
    r.status = std::atoi(line.c_str() + 9);
    while (std::getline(head, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const size_t colon = line.find(':');
      if (colon == std::string::npos) return out;
      r.headers.emplace_back(lower(line.substr(0, colon)), trim(line.substr(colon + 1)));
    }
    size_t at = end + 4;
    if (const std::string cl = r.header("content-length"); cl != "<none>") {
      const size_t n = std::stoul(cl);
      if (bytes.size() < at + n) return out;
      r.body = bytes.substr(at, n);
      at += n;
    } else if (lower(r.header("transfer-encoding")) == "chunked") {
      for (;;) {
        const size_t eol = bytes.find("\r\n", at);
        if (eol == std::string::npos) return out;
        const size_t n = std::stoul(bytes.substr(at, eol - at), nullptr, 16);
        if (bytes.size() < eol + 2 + n + 2) return out;
        r.body += bytes.substr(eol + 2, n);
        at = eol + 2 + n + 2;
        if (n == 0) break;
      }
    } else if (r.status != 204 && r.status != 304) {
      return out;  // framed by the close: not used by nginx here
    }
    out.push_back(std::move(r));
    pos = at;
  }
}

// One non-blocking client connection from `source` (a loopback address) to 127.0.0.1:`port`.
// Times are milliseconds since the connection was made. Not thread-safe; one thread per object.
class RawConn {
 public:
  explicit RawConn(uint16_t port, const std::string& source = "127.0.0.1") {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      error_ = std::string("socket: ") + std::strerror(errno);
      return;
    }
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
      error_ = "bind " + source + ": " + std::strerror(errno);
      return;
    }
    t0_ = Clock::now();
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS) {
      error_ = std::string("connect: ") + std::strerror(errno);
      return;
    }
    pollfd p{fd_, POLLOUT, 0};
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (::poll(&p, 1, 5000) != 1 || ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 ||
        soerr != 0)
      error_ = std::string("connect: ") + std::strerror(soerr != 0 ? soerr : ETIMEDOUT);
  }
  ~RawConn() { close(); }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  const std::string& error() const { return error_; }

  // Sends `data` while reading, until the peer closes, `want` complete responses have arrived
  // (0: wait for the close) or `limit` has passed. Sending stops quietly when the peer stops
  // taking bytes (a reset or a shutdown after its answer).
  void exchange(const std::string& data, std::chrono::milliseconds limit, size_t want = 0) {
    pump(data, Clock::now() + limit, want, false);
  }

  // Sends `data` (reading meanwhile) and returns once it is sent, or as exchange() does.
  void send(const std::string& data, std::chrono::milliseconds limit) {
    pump(data, Clock::now() + limit, 0, true);
  }

  // Reads only: until the peer closes, `want` complete responses have arrived or `limit` passed.
  void read_for(std::chrono::milliseconds limit, size_t want = 0) {
    pump({}, Clock::now() + limit, want, false);
  }

  const std::string& received() const { return in_; }
  std::vector<RawResponse> responses() const { return parse_responses(in_); }
  bool closed() const { return closed_; }
  int64_t first_byte_ms() const { return first_byte_ms_; }
  int64_t closed_ms() const { return closed_ms_; }
  size_t sent() const { return sent_total_; }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  // Polls at least once, also when `deadline` has passed already.
  void pump(const std::string& data, Clock::time_point deadline, size_t want, bool until_sent) {
    size_t sent = 0;
    for (bool last = false; !last && fd_ >= 0 && error_.empty() && !closed_;) {
      if (want > 0 && parse_responses(in_).size() >= want) return;
      if (until_sent && (sent == data.size() || write_closed_)) return;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      last = left.count() <= 0;
      pollfd p{fd_, POLLIN, 0};
      if (sent < data.size() && !write_closed_) p.events |= POLLOUT;
      const int r = ::poll(&p, 1, static_cast<int>(std::clamp<int64_t>(left.count(), 0, 50)));
      if (r < 0 && errno != EINTR) {
        error_ = std::string("poll: ") + std::strerror(errno);
        return;
      }
      if (r <= 0) continue;
      if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        char buf[64 * 1024];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n > 0) {
          if (first_byte_ms_ < 0) first_byte_ms_ = ms_since(t0_);
          in_.append(buf, static_cast<size_t>(n));
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
          closed_ = true;  // an orderly close or a reset
          closed_ms_ = ms_since(t0_);
        }
      }
      if ((p.revents & POLLOUT) != 0 && !closed_) {
        const size_t chunk = std::min<size_t>(data.size() - sent, 256 * 1024);
        const ssize_t n = ::send(fd_, data.data() + sent, chunk, MSG_NOSIGNAL);
        if (n > 0) {
          sent += static_cast<size_t>(n);
          sent_total_ += static_cast<size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          write_closed_ = true;
        }
      }
    }
  }

  int fd_ = -1;
  std::string error_, in_;
  Clock::time_point t0_ = Clock::now();
  bool closed_ = false, write_closed_ = false;
  int64_t first_byte_ms_ = -1, closed_ms_ = -1;
  size_t sent_total_ = 0;
};

// A request as bytes: request line, Host, the token, `headers` (each line ending in \r\n), a blank
// line and `body` (framed by the caller's headers).
std::string raw_request(const std::string& method, const std::string& path,
                        const std::string& headers = {}, const std::string& body = {}) {
  return method + " " + path + " HTTP/1.1\r\nHost: quizflow\r\nAuthorization: Bearer " + kToken +
         "\r\n" + headers + "\r\n" + body;
}

std::string content_length(size_t n) { return "Content-Length: " + std::to_string(n) + "\r\n"; }

// `body` in chunks of at most `size` bytes, with the final empty chunk.
std::string chunked(const std::string& body, size_t size) {
  std::string out;
  for (size_t at = 0; at < body.size(); at += size) {
    const size_t n = std::min(size, body.size() - at);
    char hex[32];
    std::snprintf(hex, sizeof hex, "%zx\r\n", n);
    out += hex + body.substr(at, n) + "\r\n";
  }
  return out + "0\r\n\r\n";
}

// The error body of spec §3 with `code`, from a response of `status`, as JSON.
::testing::AssertionResult is_json_error(const RawResponse& r, int status,
                                         const std::string& code) {
  if (r.status != status)
    return ::testing::AssertionFailure()
           << "status " << r.status << ", wanted " << status << ": " << r.show();
  if (r.header("content-type").rfind("application/json", 0) != 0)
    return ::testing::AssertionFailure()
           << "Content-Type " << r.header("content-type") << ": " << r.show();
  const auto d = parse_json(r.body);
  const rapidjson::Value* e = d.HasParseError() ? nullptr : at_path(d, "error");
  if (e == nullptr || !e->IsObject())
    return ::testing::AssertionFailure() << "no error object: " << r.show();
  if (str_at(d, "error.code") != code)
    return ::testing::AssertionFailure()
           << "error.code " << str_at(d, "error.code") << ", wanted " << code << ": " << r.show();
  for (const char* key : {"error.message", "error.field"})
    if (at_path(d, key) == nullptr || !at_path(d, key)->IsString())
      return ::testing::AssertionFailure() << key << " missing or not a string: " << r.show();
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------
// The fixture: one engine (its own database) and nginx in front of it, shared by every test
// ---------------------------------------------------------------------------------------------

class NginxFront : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string db_admin;
    if ((bin_ = quizflow_bin(setup_error_)).empty()) return;
    if ((db_admin = database_url(setup_error_)).empty()) return;
    if ((nginx_bin_ = find_nginx(setup_error_)).empty()) return;
    if ((shipped_ = shipped_conf(setup_error_)).empty()) return;
    if (shipped_.find("limit_conn qf_per_client " + std::to_string(kPerClientLimit) + ";") ==
            std::string::npos ||
        shipped_.find("limit_conn qf_total " + std::to_string(kTotalLimit) + ";") ==
            std::string::npos) {
      setup_error_ = "docker/nginx.conf no longer has the connection limits of this test (" +
                     std::to_string(kPerClientLimit) + " per client, " +
                     std::to_string(kTotalLimit) + " in all): update kPerClientLimit/kTotalLimit";
      return;
    }
    try {
      dir_ = make_temp_dir("quizflow-nginx");
    } catch (const std::exception& e) {
      setup_error_ = e.what();
      return;
    }
    ::chmod(dir_.c_str(), 0755);
    db_ = std::make_unique<ScratchDatabase>(db_admin, dir_);
    if (!db_->error().empty()) {
      setup_error_ = db_->error();
      return;
    }
    server_ = std::make_unique<ServerProcess>(
        bin_, dir_, "engine", isolated_env(db_->url(), {{"QUIZFLOW_API_TOKEN", kToken}}));
    if (std::string err = server_->start(); !err.empty()) {
      setup_error_ = "starting the engine: " + err + "\n" + server_->log();
      return;
    }
    const uint16_t port = free_port();
    const std::string conf = test_conf(shipped_, port, server_->port(), {}, setup_error_);
    if (conf.empty()) return;
    nginx_ = std::make_unique<NginxProcess>(nginx_bin_, dir_ + "/nginx");
    if (std::string err = nginx_->start(conf, port); !err.empty()) {
      setup_error_ = "starting nginx: " + err;
      return;
    }
    quiz_id_ = next_quiz_id();
    try {
      HttpClient c = client();
      const HttpResponse r = c.request("POST", "/v1/quizzes", open_quiz_json(quiz_id_),
                                       {{"Authorization", std::string("Bearer ") + kToken}});
      if (r.status != 201) setup_error_ = "creating the quiz through nginx: " + show(r);
    } catch (const std::exception& e) {
      setup_error_ = std::string("creating the quiz through nginx: ") + e.what();
    }
  }

  static void TearDownTestSuite() {
    if (nginx_) {
      nginx_->stop();
      if (const std::string bad = nginx_failures(nginx_->error_log()); !bad.empty())
        failures_at_end_ += "nginx logged failures of its own:\n" + bad;
    }
    if (server_ && server_->running()) {
      std::string why;
      const auto code = server_->terminate(std::chrono::seconds(20), why);
      if (code != std::optional<int>(0))
        failures_at_end_ += "the engine did not stop cleanly: " + why + "\n";
    }
    if (server_)
      if (const std::string bad = engine_failures(server_->log()); !bad.empty())
        failures_at_end_ += "the engine logged errors:\n" + bad;
    if (!failures_at_end_.empty()) {
      ADD_FAILURE() << failures_at_end_;
      any_failure_ = true;
    }
    nginx_.reset();
    server_.reset();
    db_.reset();
    if (!dir_.empty() && !any_failure_)
      std::filesystem::remove_all(dir_);
    else if (!dir_.empty())
      std::fprintf(stderr, "engine and nginx logs kept in %s\n", dir_.c_str());
  }

  void SetUp() override {
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    ASSERT_EQ(engine_gone(), "");
  }

  // Empty while the engine runs; otherwise how it ended and the lines of its log that say why.
  // Nothing in this file signals the engine before TearDownTestSuite: a "signal 15 received"
  // here came from outside the test.
  static std::string engine_gone() {
    const ExitInfo end = server_->wait_exit(std::chrono::milliseconds(0));
    if (!end.ended) return {};
    std::istringstream log(server_->log());
    std::string line, why;
    while (std::getline(log, line))
      if (line.find("signal") != std::string::npos || line.find(" error ") != std::string::npos ||
          line.find(" critical ") != std::string::npos || line.find("stopped") != std::string::npos)
        why += line + "\n";
    return "the engine is gone (" + end.describe() + "):\n" + why;
  }

  void TearDown() override {
    if (!HasFailure()) return;
    any_failure_ = true;
    if (!setup_error_.empty()) return;
    if (server_) print_log(*server_, 8 * 1024);
    if (nginx_)
      std::fprintf(stderr, "---- nginx error log ----\n%s---- nginx access log ----\n%s----\n",
                   tail(nginx_->error_log(), 8 * 1024).c_str(),
                   tail(nginx_->access_log(), 8 * 1024).c_str());
  }

  static uint16_t port() { return nginx_->port(); }
  static HttpClient client() { return HttpClient("127.0.0.1", port(), std::chrono::seconds(10)); }

  // A valid answer for the shared quiz, with an event id and a player of its own.
  static std::string new_answer(std::string& event_id) {
    const int n = ++answers_made_;
    event_id = "ngx-" + random_hex(10) + "-" + std::to_string(n);
    return answer_json({event_id, quiz_id_, 1000 + n, 1, 2, wall_ms(), 1500});
  }

  // One good answer through nginx on a connection of its own: 200 with accepted 1.
  void expect_good_answer(const std::string& when) {
    std::string id;
    const std::string body = new_answer(id);
    try {
      HttpClient c = client();
      const HttpResponse r = c.request("POST", "/v1/answers", body,
                                       {{"Authorization", std::string("Bearer ") + kToken}});
      const auto d = parse(r);
      EXPECT_EQ(r.status, 200) << when << ": " << show(r);
      EXPECT_EQ(int_at(d, "accepted"), 1) << when << ": " << show(r);
      if (r.status == 200 && int_at(d, "accepted") == 1) stored_ids_.push_back(id);
    } catch (const std::exception& e) {
      ADD_FAILURE() << when << ": a good answer through nginx failed: " << e.what();
    }
  }

  // The same from a raw connection from `source`.
  void expect_good_answer_from(const std::string& source, const std::string& when) {
    std::string id;
    const std::string body = new_answer(id);
    RawConn c(port(), source);
    ASSERT_EQ(c.error(), "") << when;
    c.exchange(raw_request("POST", "/v1/answers", content_length(body.size()), body),
               std::chrono::seconds(10), 1);
    const auto rs = c.responses();
    ASSERT_EQ(rs.size(), 1u) << when << ": " << c.received().substr(0, 600);
    EXPECT_EQ(rs[0].status, 200) << when << ": " << rs[0].show();
    EXPECT_EQ(int_at(parse_json(rs[0].body), "accepted"), 1) << when << ": " << rs[0].show();
    if (rs[0].status == 200) stored_ids_.push_back(id);
  }

  // The engine is still running and healthy behind nginx, takes a good answer, has stored every
  // good answer of this test and none of the rejected bodies, and has logged no error; nginx is
  // still running.
  void expect_engine_fine(const std::string& when) {
    ASSERT_TRUE(nginx_->running()) << when << ": nginx is gone\n" << nginx_->error_log();
    ASSERT_EQ(engine_gone(), "") << when;
    try {
      HttpClient c = client();
      const HttpResponse r = c.request("GET", "/health");
      EXPECT_EQ(r.status, 200) << when << ": GET /health through nginx: " << show(r);
    } catch (const std::exception& e) {
      ADD_FAILURE() << when << ": GET /health through nginx failed: " << e.what();
    }
    expect_good_answer(when);
    EXPECT_EQ(count_stored(stored_ids_), static_cast<int64_t>(stored_ids_.size()))
        << when << ": not every accepted answer is in answer_events";
    EXPECT_EQ(count_stored(refused_ids_), 0) << when << ": a rejected request reached the engine";
    EXPECT_EQ(engine_failures(server_->log()), "") << when;
    EXPECT_EQ(nginx_failures(nginx_->error_log()), "") << when;
  }

  // How many of `ids` are in answer_events (-1 when psql fails).
  static int64_t count_stored(const std::vector<std::string>& ids) {
    if (ids.empty()) return 0;
    std::string list;
    for (const auto& id : ids) list += (list.empty() ? "'" : ",'") + id + "'";
    const CommandResult r = psql(
        db_->url(), "SELECT count(*) FROM answer_events WHERE event_id IN (" + list + ")", dir_);
    return r.exit_code == 0 ? std::atoll(r.out.c_str()) : -1;
  }

  // A body of a valid answer that nginx must refuse (the request's framing is wrong): its event
  // id must never reach the database.
  std::string refused_answer() {
    std::string id;
    std::string body = new_answer(id);
    refused_ids_.push_back(id);
    return body;
  }

  // Sends `request` on a connection of its own, reads until nginx closes it (at most `limit`);
  // expects exactly one answer: `status` with error code `code`, started within kPromptMs.
  void expect_refused(const std::string& what, const std::string& request, int status,
                      const std::string& code, std::chrono::milliseconds limit = 10s) {
    SCOPED_TRACE(what);
    RawConn c(port());
    ASSERT_EQ(c.error(), "");
    c.exchange(request, limit);
    const auto rs = c.responses();
    ASSERT_EQ(rs.size(), 1u) << "answers: " << c.received().substr(0, 1200);
    EXPECT_TRUE(is_json_error(rs[0], status, code));
    EXPECT_GE(c.first_byte_ms(), 0);
    EXPECT_LE(c.first_byte_ms(), kPromptMs) << "the answer took too long";
    EXPECT_TRUE(c.closed()) << "nginx kept the connection open for " << limit.count() << " ms";
    std::printf("  %-44s → %d %s in %lld ms (closed after %lld ms)\n", what.c_str(), rs[0].status,
                str_at(parse_json(rs[0].body), "error.code").c_str(),
                static_cast<long long>(c.first_byte_ms()), static_cast<long long>(c.closed_ms()));
  }

  std::vector<std::string> stored_ids_, refused_ids_;

  static inline std::string setup_error_, bin_, nginx_bin_, shipped_, dir_, failures_at_end_;
  static inline std::unique_ptr<ScratchDatabase> db_;
  static inline std::unique_ptr<ServerProcess> server_;
  static inline std::unique_ptr<NginxProcess> nginx_;
  static inline int64_t quiz_id_ = 0;
  static inline int answers_made_ = 0;
  static inline bool any_failure_ = false;
};

// ---------------------------------------------------------------------------------------------
// The hostile inputs found against Pistache 0.0.5
// ---------------------------------------------------------------------------------------------

// Pistache parsed them in quadratic time: 5.9 s of CPU per request.
TEST_F(NginxFront, EightyThousandSmallHeadersGet431AtOnce) {
  std::string req = "GET /health HTTP/1.1\r\nHost: quizflow\r\n";
  for (int i = 0; i < 80'000; ++i) req += "X-" + std::to_string(i) + ": y\r\n";
  expect_refused("80,000 small headers", req + "\r\n", 431, "headers_too_large");
  expect_engine_fine("after 80,000 headers");
}

// Pistache answered 500 std::bad_alloc with the internal text, after reserving the declared length.
TEST_F(NginxFront, ContentLengthOf2To40Gets413BeforeAnyBodyIsRead) {
  const std::string body = refused_answer();
  expect_refused("Content-Length: 2^40",
                 raw_request("POST", "/v1/answers", "Content-Length: 1099511627776\r\n", body), 413,
                 "too_large");
  expect_engine_fine("after Content-Length 2^40");
}

// Pistache accepted all of these.
TEST_F(NginxFront, BrokenContentLengthFramingGets400) {
  struct Case {
    std::string name, headers;
    bool chunked_body;
  };
  const std::vector<Case> cases = {
      {"Content-Length: -1", "Content-Length: -1\r\n", false},
      {"Content-Length: abc", "Content-Length: abc\r\n", false},
      {"Content-Length: 10, 20", "Content-Length: 10, 20\r\n", false},
      {"two Content-Length, same value", "", false},
      {"two Content-Length, different values", "", false},
      {"Content-Length and Transfer-Encoding: chunked", "", true},
  };
  for (const Case& k : cases) {
    const std::string body = refused_answer();
    std::string headers = k.headers;
    if (k.name == "two Content-Length, same value")
      headers = content_length(body.size()) + content_length(body.size());
    if (k.name == "two Content-Length, different values")
      headers = content_length(body.size()) + content_length(body.size() + 10);
    if (k.chunked_body) headers = content_length(body.size()) + "Transfer-Encoding: chunked\r\n";
    expect_refused(
        k.name,
        raw_request("POST", "/v1/answers", headers, k.chunked_body ? chunked(body, 16) : body), 400,
        "bad_request");
    expect_engine_fine("after " + k.name);
  }
}

// Pistache answered a plain-text 413 and parsed the rest of the body as further requests.
TEST_F(NginxFront, OverLimitBodyGets413AndWhatFollowsIsNeverParsed) {
  // 2 MiB of text that looks like requests, then a whole request carrying a valid answer.
  std::string filler;
  const std::string fake = raw_request("GET", "/health");
  while (filler.size() < 2 * kMaxBody) filler += fake;
  filler.resize(2 * kMaxBody);
  const std::string smuggled_body = refused_answer();
  const std::string smuggled =
      raw_request("POST", "/v1/answers", content_length(smuggled_body.size()), smuggled_body);

  expect_refused(
      "2 MiB body (Content-Length) + a request",
      raw_request("POST", "/v1/answers", content_length(filler.size()), filler) + smuggled, 413,
      "too_large");
  expect_engine_fine("after an over-limit body");
  expect_refused("2 MiB body (chunked) + a request",
                 raw_request("POST", "/v1/answers", "Transfer-Encoding: chunked\r\n",
                             chunked(filler, 64 * 1024)) +
                     smuggled,
                 413, "too_large");
  expect_engine_fine("after an over-limit chunked body");
}

// The boundary is the engine's: a body of exactly QUIZFLOW_HTTP_MAX_BODY passes, one byte more is
// refused by nginx (and no longer reaches Pistache's plain-text 413).
TEST_F(NginxFront, BodyLimitIsTheEngines) {
  std::string id;
  std::string body = new_answer(id);
  body.resize(kMaxBody, ' ');  // JSON allows trailing blanks
  RawConn c(port());
  ASSERT_EQ(c.error(), "");
  c.exchange(raw_request("POST", "/v1/answers", content_length(body.size()), body), 10s, 1);
  const auto rs = c.responses();
  ASSERT_EQ(rs.size(), 1u) << c.received().substr(0, 600);
  EXPECT_EQ(rs[0].status, 200) << rs[0].show();
  EXPECT_EQ(int_at(parse_json(rs[0].body), "accepted"), 1) << rs[0].show();
  if (rs[0].status == 200) stored_ids_.push_back(id);

  std::string over = refused_answer();
  over.resize(kMaxBody + 1, ' ');
  expect_refused("body of 1 MiB + 1 byte",
                 raw_request("POST", "/v1/answers", content_length(over.size()), over), 413,
                 "too_large");
  expect_engine_fine("after the body limit");
}

// Pistache dropped the second request of a pipeline unanswered.
TEST_F(NginxFront, PipelinedRequestsAreAllAnsweredInOrder) {
  std::string a, b;
  const std::string body_a = new_answer(a), body_b = new_answer(b);
  const std::string pipeline =
      raw_request("POST", "/v1/answers", content_length(body_a.size()), body_a) +
      raw_request("GET", "/health") +
      raw_request("POST", "/v1/answers", content_length(body_b.size()) + "Connection: close\r\n",
                  body_b);
  RawConn c(port());
  ASSERT_EQ(c.error(), "");
  const auto t0 = Clock::now();
  c.exchange(pipeline, 10s);
  const auto rs = c.responses();
  ASSERT_EQ(rs.size(), 3u) << c.received().substr(0, 2000);
  for (const auto& [i, id] : {std::pair<size_t, std::string>{0, a}, {2, b}}) {
    const RawResponse& r = rs[i];
    const auto d = parse_json(r.body);
    EXPECT_EQ(r.status, 200) << r.show();
    EXPECT_EQ(int_at(d, "accepted"), 1) << r.show();
    const rapidjson::Value* results = at_path(d, "results");
    ASSERT_TRUE(results != nullptr && results->IsArray() && results->Size() == 1) << r.show();
    EXPECT_EQ(str_at((*results)[0], "event_id"), id) << "answers out of order: " << r.show();
  }
  EXPECT_EQ(rs[1].status, 200) << rs[1].show();
  EXPECT_EQ(str_at(parse_json(rs[1].body), "status"), "healthy") << rs[1].show();
  EXPECT_TRUE(c.closed()) << "Connection: close on the last request was not honoured";
  std::printf("  %-44s → 200, 200, 200 in %lld ms\n", "3 pipelined requests",
              static_cast<long long>(ms_since(t0)));
  stored_ids_.push_back(a);
  stored_ids_.push_back(b);
  expect_engine_fine("after a pipeline");
}

// nginx reads a chunked body whole and passes it on with one Content-Length.
TEST_F(NginxFront, ChunkedBodyIsPassedOnWithOneContentLength) {
  std::string id;
  const std::string body = new_answer(id);
  RawConn c(port());
  ASSERT_EQ(c.error(), "");
  c.exchange(raw_request("POST", "/v1/answers", "Transfer-Encoding: chunked\r\n", chunked(body, 7)),
             10s, 1);
  const auto rs = c.responses();
  ASSERT_EQ(rs.size(), 1u) << c.received().substr(0, 600);
  EXPECT_EQ(rs[0].status, 200) << rs[0].show();
  EXPECT_EQ(int_at(parse_json(rs[0].body), "accepted"), 1) << rs[0].show();
  if (rs[0].status == 200) stored_ids_.push_back(id);
  expect_engine_fine("after a chunked body");
}

// A client sending its header one byte a second is closed at client_header_timeout (2 s in this
// copy; 5 s shipped), while other clients are served. nginx 1.22 closes without an answer.
TEST_F(NginxFront, SlowHeaderClientIsCutOffAtTheHeaderTimeout) {
  const std::string req =
      raw_request("GET", "/health", "X-Slow: " + std::string(100, 'a') + "\r\n");
  RawConn slow(port());
  ASSERT_EQ(slow.error(), "");
  std::thread trickle([&] {
    for (size_t i = 0; i < req.size() && !slow.closed(); ++i) {
      slow.send(req.substr(i, 1), 100ms);
      slow.read_for(900ms);
    }
  });
  expect_good_answer("beside a slow header");
  expect_good_answer("beside a slow header, again");
  trickle.join();
  EXPECT_TRUE(slow.closed()) << "still open after " << slow.sent() << " bytes, one a second";
  EXPECT_GE(slow.closed_ms(), 1500) << "closed before the header timeout";
  EXPECT_LE(slow.closed_ms(), 5000) << "closed long after the 2 s header timeout";
  EXPECT_LT(slow.sent(), req.size());
  for (const auto& r : slow.responses()) EXPECT_TRUE(is_json_error(r, 408, "timeout"));
  std::printf("  %-44s → closed after %lld ms (%zu bytes sent), %zu answers\n",
              "header at 1 byte/s", static_cast<long long>(slow.closed_ms()), slow.sent(),
              slow.responses().size());
  expect_engine_fine("after a slow header");
}

// A client that stops sending its body is closed at client_body_timeout (10 s, as shipped); the
// engine never sees the request.
TEST_F(NginxFront, StalledBodyIsCutOffAtTheBodyTimeout) {
  const std::string body = refused_answer();
  RawConn slow(port());
  ASSERT_EQ(slow.error(), "");
  slow.send(raw_request("POST", "/v1/answers", content_length(body.size()), body.substr(0, 10)),
            1s);
  expect_good_answer("beside a stalled body");
  slow.read_for(20s);
  EXPECT_TRUE(slow.closed());
  EXPECT_GE(slow.closed_ms(), 9000) << "closed before the body timeout";
  EXPECT_LE(slow.closed_ms(), 14000) << "closed long after the 10 s body timeout";
  for (const auto& r : slow.responses()) EXPECT_TRUE(is_json_error(r, 408, "timeout"));
  std::printf("  %-44s → closed after %lld ms, %zu answers\n", "body stalled after 10 bytes",
              static_cast<long long>(slow.closed_ms()), slow.responses().size());
  expect_engine_fine("after a stalled body");
}

// Opens `n` connections from `source`, each sending the header of a POST and 10 of its 200 body
// bytes: requests in progress that wait for the rest of their bodies (until client_body_timeout).
void hold_requests(uint16_t port, const std::string& source, int n,
                   std::vector<std::unique_ptr<RawConn>>& conns) {
  const std::string head =
      raw_request("POST", "/v1/answers", content_length(200), std::string(10, ' '));
  for (int i = 0; i < n; ++i) {
    conns.push_back(std::make_unique<RawConn>(port, source));
    ASSERT_EQ(conns.back()->error(), "") << source << ", connection " << i;
    conns.back()->send(head, 1s);
  }
}

// How many of `conns` have an answer, reading until at least `want` have one or `limit` passed.
int count_answered(std::vector<std::unique_ptr<RawConn>>& conns, int want,
                   std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    int answered = 0;
    for (auto& c : conns) {
      c->read_for(0ms, 1);
      answered += c->responses().empty() ? 0 : 1;
    }
    if (answered >= want || Clock::now() > deadline) return answered;
    std::this_thread::sleep_for(20ms);
  }
}

// Every answer any of `conns` got is 503 overloaded with Retry-After.
void expect_all_overloaded(const std::vector<std::unique_ptr<RawConn>>& conns) {
  for (const auto& c : conns) {
    for (const auto& r : c->responses()) {
      EXPECT_TRUE(is_json_error(r, 503, "overloaded"));
      EXPECT_EQ(r.header("retry-after"), "1") << r.show();
    }
  }
}

// GET /health from `source` answers 200 within `limit` (polled).
bool served_again(uint16_t port, const std::string& source, std::chrono::milliseconds limit) {
  return poll_until(limit, [&] {
    RawConn again(port, source);
    again.exchange(raw_request("GET", "/health"), 2s, 1);
    return again.responses().size() == 1 && again.responses()[0].status == 200;
  });
}

// Requests in progress beyond limit_conn from one address get 503 overloaded with Retry-After;
// other addresses are served meanwhile, and the address is served again once its requests end.
TEST_F(NginxFront, ConnectionsBeyondThePerClientLimitGet503) {
  constexpr int kExtra = 6;
  std::vector<std::unique_ptr<RawConn>> conns;
  const auto t0 = Clock::now();
  hold_requests(port(), "127.0.0.3", kPerClientLimit + kExtra, conns);
  // Every connection has sent its header; exactly kExtra of them are refused at once, whichever
  // nginx read last.
  const int refused = count_answered(conns, kExtra, 3s);
  const int64_t refuse_ms = ms_since(t0);
  EXPECT_EQ(refused, kExtra);
  expect_all_overloaded(conns);
  // Others are served meanwhile: another address, raw and through the usual client.
  {
    RawConn other(port(), "127.0.0.2");
    ASSERT_EQ(other.error(), "");
    other.exchange(raw_request("GET", "/health"), 5s, 1);
    ASSERT_EQ(other.responses().size(), 1u) << other.received();
    EXPECT_EQ(other.responses()[0].status, 200) << other.responses()[0].show();
  }
  expect_good_answer_from("127.0.0.2", "from another address while 127.0.0.3 is at its limit");
  expect_good_answer("from 127.0.0.1 while 127.0.0.3 is at its limit");
  // Still no answer for the held ones (they wait for their bodies).
  EXPECT_EQ(count_answered(conns, 0, 0ms), kExtra);
  std::printf("  %-44s → %d of %d got 503 overloaded within %lld ms\n",
              "70 requests from one address", refused, kPerClientLimit + kExtra,
              static_cast<long long>(refuse_ms));
  conns.clear();
  EXPECT_TRUE(served_again(port(), "127.0.0.3", 5s))
      << "127.0.0.3 not served again after its connections closed";
  expect_engine_fine("after the per-client connection limit");
}

// Beyond 256 requests in progress in all (from several addresses, each under its own limit)
// everyone gets 503 overloaded, until they end.
TEST_F(NginxFront, ConnectionsBeyondTheTotalLimitGet503) {
  constexpr int kAddresses = 5, kEach = 60;  // 300 in all, each address under its 64
  constexpr int kOver = kAddresses * kEach - kTotalLimit;
  std::vector<std::unique_ptr<RawConn>> conns;
  const auto t0 = Clock::now();
  for (int a = 0; a < kAddresses; ++a)
    hold_requests(port(), "127.0.0." + std::to_string(10 + a), kEach, conns);
  const int refused = count_answered(conns, kOver, 3s);
  const int64_t refuse_ms = ms_since(t0);
  // A connection of an earlier test still closing may hold one of the 256 for a moment.
  EXPECT_GE(refused, kOver);
  EXPECT_LE(refused, kOver + 4);
  expect_all_overloaded(conns);
  {
    RawConn other(port(), "127.0.0.1");
    ASSERT_EQ(other.error(), "");
    other.exchange(raw_request("GET", "/health"), 5s, 1);
    ASSERT_EQ(other.responses().size(), 1u) << other.received();
    EXPECT_TRUE(is_json_error(other.responses()[0], 503, "overloaded"))
        << "a new address while the total is reached";
  }
  std::printf("  %-44s → %d of %d got 503 overloaded within %lld ms\n",
              "300 requests from 5 addresses", refused, kAddresses * kEach,
              static_cast<long long>(refuse_ms));
  conns.clear();
  EXPECT_TRUE(served_again(port(), "127.0.0.1", 5s))
      << "not served again after the held requests closed";
  expect_engine_fine("after the total connection limit");
}

// At its file-descriptor limit (1,100 idle connections) Pistache spun and accepted nobody new.
// Through nginx the idle connections stay in nginx, which serves others meanwhile and closes them
// at client_header_timeout (2 s in this copy).
TEST_F(NginxFront, ElevenHundredIdleConnectionsDoNotStopService) {
  constexpr int kIdle = 1100;
  rlimit nofile{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &nofile), 0);
  if (nofile.rlim_cur < kIdle + 200) {
    nofile.rlim_cur = std::min<rlim_t>(nofile.rlim_max, kIdle + 1000);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &nofile), 0) << std::strerror(errno);
  }
  ASSERT_GE(nofile.rlim_cur, static_cast<rlim_t>(kIdle + 200))
      << "the test needs " << kIdle + 200 << " file descriptors (ulimit -n)";
  const auto t0 = Clock::now();
  std::vector<std::unique_ptr<RawConn>> idle;
  for (int i = 0; i < kIdle; ++i) {
    idle.push_back(std::make_unique<RawConn>(port()));
    ASSERT_EQ(idle.back()->error(), "") << "connection " << i;
  }
  const int64_t opened_ms = ms_since(t0);
  expect_good_answer("beside 1,100 idle connections");
  expect_good_answer_from("127.0.0.2", "beside 1,100 idle connections, another address");
  const auto deadline = Clock::now() + 10s;
  size_t open = idle.size();
  while (open > 0 && Clock::now() < deadline) {
    open = 0;
    for (auto& c : idle) {
      if (!c->closed()) c->read_for(0ms);
      open += c->closed() ? 0 : 1;
    }
    if (open > 0) std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(open, 0u) << "idle connections nginx kept open past its header timeout";
  for (auto& c : idle) EXPECT_EQ(c->received(), "") << "an idle connection got an answer";
  std::printf("  %-44s → opened in %lld ms, served beside them, all closed after %lld ms\n",
              "1,100 idle connections", static_cast<long long>(opened_ms),
              static_cast<long long>(ms_since(t0)));
  idle.clear();
  expect_engine_fine("after 1,100 idle connections");
}

// ---------------------------------------------------------------------------------------------
// Other requests nginx answers itself, and what it passes through
// ---------------------------------------------------------------------------------------------

TEST_F(NginxFront, OtherMalformedRequestsGetJsonErrors) {
  expect_refused("request line of 10,000 bytes",
                 raw_request("GET", "/v1/quizzes/" + std::string(10'000, '1')), 414,
                 "uri_too_long");
  expect_refused("header line of 10,000 bytes",
                 raw_request("GET", "/health", "X-Long: " + std::string(10'000, 'a') + "\r\n"), 431,
                 "headers_too_large");
  expect_refused("not HTTP", std::string("\x16\x03\x01 garbage\r\n\r\n"), 400, "bad_request");
  expect_refused("HTTP/1.1 without Host", "GET /health HTTP/1.1\r\n\r\n", 400, "bad_request");
  expect_refused("header folded over two lines", raw_request("GET", "/health", "X-A: a\r\n b\r\n"),
                 400, "bad_request");
  expect_refused("TRACE", raw_request("TRACE", "/health"), 405, "method_not_allowed");
  expect_refused("HTTP/2.0 request line", "GET /health HTTP/2.0\r\nHost: quizflow\r\n\r\n", 505,
                 "http_version");
  // Not a 4xx: nginx answers an unknown transfer coding with 501.
  const std::string body = refused_answer();
  expect_refused("Transfer-Encoding: gzip",
                 raw_request("POST", "/v1/answers", "Transfer-Encoding: gzip\r\n", body), 501,
                 "not_implemented");
  expect_engine_fine("after malformed requests");
}

// The engine's own answers, errors included, pass through unchanged; only the headers the engine
// reads are passed on, and the token is one of them.
TEST_F(NginxFront, EngineAnswersPassThroughUnchanged) {
  HttpClient c = client();
  std::string id;
  HttpResponse r = c.request("POST", "/v1/answers", new_answer(id));
  EXPECT_EQ(r.status, 401) << "no token: " << show(r);
  EXPECT_EQ(str_at(parse(r), "error.code"), "unauthorized") << show(r);
  r = c.request("POST", "/v1/answers", "{not json",
                {{"Authorization", std::string("Bearer ") + kToken}});
  EXPECT_EQ(r.status, 400) << show(r);
  EXPECT_EQ(str_at(parse(r), "error.code"), "malformed_json") << show(r);
  r = c.request("GET", "/v1/nowhere");
  EXPECT_EQ(r.status, 404) << show(r);
  EXPECT_EQ(str_at(parse(r), "error.code"), "not_found") << show(r);
  r = c.request("GET", "/v1/quizzes/" + std::to_string(quiz_id_) + "/leaderboard");
  EXPECT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(int_at(parse(r), "quiz_id"), quiz_id_) << show(r);
  // The error pages are internal: a client cannot fetch them.
  r = c.request("GET", "/_nginx/error/503");
  EXPECT_EQ(r.status, 404) << show(r);
  expect_engine_fine("after the engine's own errors");
}

// nginx's own 502 and 504 pages: an engine not listening, and one that never answers.
TEST_F(NginxFront, UnreachableOrSilentEngineGetsJson502And504) {
  {
    const uint16_t port = free_port(), closed = free_port();
    std::string err;
    const std::string conf = test_conf(shipped_, port, closed, {}, err);
    ASSERT_FALSE(conf.empty()) << err;
    NginxProcess front(nginx_bin_, dir_ + "/nginx-502");
    ASSERT_EQ(front.start(conf, port), "");
    std::string id;
    const std::string body = new_answer(id);
    RawConn c(port);
    c.exchange(raw_request("POST", "/v1/answers", content_length(body.size()), body), 10s, 1);
    const auto rs = c.responses();
    ASSERT_EQ(rs.size(), 1u) << c.received();
    EXPECT_TRUE(is_json_error(rs[0], 502, "engine_unreachable"));
    EXPECT_EQ(rs[0].header("retry-after"), "1") << rs[0].show();
    std::printf("  %-44s → %d in %lld ms\n", "engine not listening", rs[0].status,
                static_cast<long long>(c.first_byte_ms()));
  }
  {
    // A listener that takes connections (the kernel's backlog) and never answers.
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(fd, 16), 0);
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    const uint16_t port = free_port();
    std::string err;
    const std::string conf =
        test_conf(shipped_, port, ntohs(a.sin_port),
                  {{"proxy_read_timeout 60s;", "proxy_read_timeout 1s;"}}, err);
    ASSERT_FALSE(conf.empty()) << err;
    NginxProcess front(nginx_bin_, dir_ + "/nginx-504");
    const std::string started = front.start(conf, port);
    ASSERT_EQ(started, "");
    std::string id;
    const std::string body = new_answer(id);
    RawConn c(port);
    c.exchange(raw_request("POST", "/v1/answers", content_length(body.size()), body), 10s, 1);
    const auto rs = c.responses();
    ::close(fd);
    ASSERT_EQ(rs.size(), 1u) << c.received();
    EXPECT_TRUE(is_json_error(rs[0], 504, "engine_timeout"));
    EXPECT_EQ(rs[0].header("retry-after"), "1") << rs[0].show();
    EXPECT_GE(c.first_byte_ms(), 900);
    EXPECT_LE(c.first_byte_ms(), 1000 + kPromptMs);
    std::printf("  %-44s → %d in %lld ms\n", "engine never answering", rs[0].status,
                static_cast<long long>(c.first_byte_ms()));
  }
  expect_engine_fine("after the 502 and 504 copies");
}

}  // namespace
