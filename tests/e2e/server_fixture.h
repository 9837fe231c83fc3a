// Shared helpers for the end-to-end tests: child processes (a `quizflow serve` server, one-shot
// commands such as `quizflow check-config`, psql, promtool, prometheus), temporary directories,
// PostgreSQL URLs, JSON bodies of spec §3/§4 and small JSON accessors. Used by every e2e test that
// starts a server (load_helpers.h builds on it for the load tests).
//
// Header-only; everything is `inline` in namespace qf_e2e so that a test file may use any subset.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tools/api_json.h"
#include "tools/http_client.h"
#include "tools/timestamps.h"

extern char** environ;

namespace qf_e2e {

using quizflow::tools::HttpClient;
using quizflow::tools::HttpResponse;
using quizflow::tools::QuestionSpec;
using quizflow::tools::quiz_json;
using quizflow::tools::RewardSpec;
using quizflow::tools::rfc3339;
using quizflow::tools::wall_ms;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Time, files, randomness
// ---------------------------------------------------------------------------------------------

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// `n` random lower-case hex digits.
inline std::string random_hex(size_t n) {
  static std::mt19937_64 rng{std::random_device{}() ^
                             static_cast<uint64_t>(wall_ms()) * 0x9E3779B97F4A7C15ull};
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) s += digits[rng() % 16];
  return s;
}

// A fresh directory under $TMPDIR (or /tmp); throws on failure.
inline std::string make_temp_dir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr)
    throw std::runtime_error("mkdtemp failed: " + std::string(std::strerror(errno)));
  return tmpl;
}

// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released). Nothing listens on it
// afterwards, so it also serves as a "closed port".
inline uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("bind/getsockname: " + why);
  }
  const uint16_t port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

// The last `max` bytes of `text`, for failure messages.
inline std::string tail(const std::string& text, size_t max = 16 * 1024) {
  return text.size() > max ? "[…]\n" + text.substr(text.size() - max) : text;
}

// The binary under test, or an explanation in `error`.
inline std::string quizflow_bin(std::string& error) {
  const char* bin = std::getenv("QUIZFLOW_BIN");
  if (bin == nullptr || *bin == '\0') {
    error =
        "QUIZFLOW_BIN is not set: point it at the built quizflow binary, e.g. "
        "QUIZFLOW_BIN=$PWD/build/quizflow";
    return {};
  }
  if (::access(bin, X_OK) != 0) {
    error = std::string("QUIZFLOW_BIN=") + bin + " is not an executable file";
    return {};
  }
  return bin;
}

inline std::string database_url(std::string& error) {
  const char* db = std::getenv("DATABASE_URL");
  if (db == nullptr || *db == '\0') {
    error =
        "DATABASE_URL is not set: the e2e tests need a PostgreSQL to run against (e.g. source "
        "the environment of scripts/test)";
    return {};
  }
  return db;
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

// Overrides of the inherited environment; a nullopt value removes the variable.
using Env = std::vector<std::pair<std::string, std::optional<std::string>>>;

inline std::vector<std::string> build_env(const Env& overrides) {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    if (std::none_of(overrides.begin(), overrides.end(),
                     [&](const auto& o) { return o.first == key; }))
      out.push_back(kv);
  }
  for (const auto& [k, v] : overrides)
    if (v) out.push_back(k + "=" + *v);
  return out;
}

// `base` with the entries of `over` replacing (or adding) same-named ones.
inline Env merge_env(Env base, const Env& over) {
  for (const auto& kv : over) {
    auto it =
        std::find_if(base.begin(), base.end(), [&](const auto& b) { return b.first == kv.first; });
    if (it != base.end())
      it->second = kv.second;
    else
      base.push_back(kv);
  }
  return base;
}

// An environment for a quizflow child that does not inherit any quizflow setting of the caller
// (every QUIZFLOW_*, DB_*, KAFKA_*, BATCH_* variable removed, QUIZFLOW_BIN aside), with
// DATABASE_URL set and the HTTP listener on a free loopback port; then `over` applied.
inline Env isolated_env(const std::string& database_url, const Env& over = {}) {
  Env env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    for (const char* prefix : {"QUIZFLOW_", "DB_", "KAFKA_", "BATCH_"})
      if (key.rfind(prefix, 0) == 0 && key != "QUIZFLOW_BIN") env.emplace_back(key, std::nullopt);
  }
  env = merge_env(std::move(env),
                  {{"DATABASE_URL", database_url}, {"QUIZFLOW_HTTP_ADDR", "127.0.0.1:0"}});
  return merge_env(std::move(env), over);
}

// Spawns argv[0] (a path) with the environment `env`; stdin from `stdin_path` (or /dev/null),
// stdout to `out_path`, stderr to `err_path` (the same file as stdout when equal). Returns the pid
// or throws.
inline pid_t spawn(const std::vector<std::string>& argv, const Env& env,
                   const std::string& out_path, const std::string& err_path,
                   const std::string& stdin_path = "/dev/null") {
  std::vector<std::string> env_strings = build_env(env);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  for (auto& s : args) argp.push_back(s.data());
  argp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, stdin_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (err_path == out_path)
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  else
    posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, args[0].c_str(), &fa, nullptr, argp.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot start " + args[0] + ": " + std::strerror(rc));
  return pid;
}

// Waits for `pid` up to `limit`; on timeout kills it (SIGKILL) and returns nullopt. Otherwise the
// raw wait status.
inline std::optional<int> wait_for(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int st = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) return st;
    if (r < 0) return std::nullopt;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      return std::nullopt;
    }
    std::this_thread::sleep_for(10ms);
  }
}

inline std::string describe_status(std::optional<int> st) {
  if (!st) return "timed out (killed)";
  if (WIFEXITED(*st)) return "exit code " + std::to_string(WEXITSTATUS(*st));
  return "signal " + std::to_string(WTERMSIG(*st));
}

struct CommandResult {
  int exit_code = -1;  // -1: timed out or ended by a signal (see `status`)
  std::string status;  // "exit code N", "signal N" or "timed out (killed)"
  std::string out, err;
  std::string all() const { return out + err; }
  std::string show() const {
    return status + "\n--- stdout ---\n" + tail(out, 8192) + "--- stderr ---\n" + tail(err, 8192);
  }
};

// Runs a command to completion (output captured in files under `dir`).
inline CommandResult run_command(const std::vector<std::string>& argv, const Env& env,
                                 const std::string& dir,
                                 std::chrono::milliseconds limit = std::chrono::seconds(30),
                                 const std::string& stdin_path = "/dev/null") {
  static int seq = 0;
  const std::string base = dir + "/cmd-" + std::to_string(::getpid()) + "-" + std::to_string(++seq);
  CommandResult r;
  const pid_t pid = spawn(argv, env, base + ".out", base + ".err", stdin_path);
  const auto st = wait_for(pid, limit);
  r.status = describe_status(st);
  if (st && WIFEXITED(*st)) r.exit_code = WEXITSTATUS(*st);
  r.out = read_file(base + ".out");
  r.err = read_file(base + ".err");
  std::filesystem::remove(base + ".out");
  std::filesystem::remove(base + ".err");
  return r;
}

// Runs a shell command line through popen(3); returns its stdout and sets `exit_code`.
inline std::string shell(const std::string& cmd, int& exit_code) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    exit_code = -1;
    return out;
  }
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = ::pclose(p);
  exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

// How a child process ended (ServerProcess::wait_exit).
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

// A `quizflow serve` child process (or any long-running child) with stdout and stderr in one file.
class ServerProcess {
 public:
  ServerProcess(std::string bin, const std::string& dir, const std::string& name, Env env,
                std::vector<std::string> extra_args = {})
      : bin_(std::move(bin)),
        port_file_(dir + "/" + name + ".port"),
        log_file_(dir + "/" + name + ".log"),
        env_(std::move(env)),
        extra_args_(std::move(extra_args)) {}

  ~ServerProcess() { kill_now(); }

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts `quizflow serve --port-file F` and waits until the port is written. With
  // `require_healthy`, also waits until GET /health answers 200; otherwise until /health answers
  // at all. Returns an empty string on success, otherwise what went wrong.
  std::string start(bool require_healthy = true,
                    std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    std::filesystem::remove(port_file_);
    std::vector<std::string> args = {bin_, "serve", "--port-file", port_file_};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    try {
      pid_ = spawn(args, env_, log_file_, log_file_);
    } catch (const std::exception& e) {
      pid_ = -1;
      return e.what();
    }
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (port_ == 0) {
      if (std::string why = exited_early(); !why.empty()) return why;
      const std::string text = read_file(port_file_);
      if (!text.empty() && text.back() == '\n') port_ = static_cast<uint16_t>(std::stoi(text));
      if (port_ != 0) break;
      if (std::chrono::steady_clock::now() > deadline)
        return "no port in " + port_file_ + " after " + std::to_string(limit.count()) + " ms";
      std::this_thread::sleep_for(20ms);
    }
    std::string last;
    while (std::chrono::steady_clock::now() < deadline) {
      if (std::string why = exited_early(); !why.empty()) return why;
      try {
        HttpClient c("127.0.0.1", port_, 2s);
        const HttpResponse r = c.request("GET", "/health");
        if (r.status == 200 || !require_healthy) return {};
        last = "HTTP " + std::to_string(r.status) + " " + r.body;
      } catch (const std::exception& e) {
        last = e.what();
      }
      std::this_thread::sleep_for(50ms);
    }
    return "GET /health never answered " + std::string(require_healthy ? "200 " : "") + "within " +
           std::to_string(limit.count()) + " ms; last: " + last;
  }

  // Starts the process and waits for it to exit by itself (for start-up failures). Returns the
  // raw wait status, or nullopt when it was still running after `limit` (it is then killed).
  std::optional<int> run_until_exit(std::chrono::milliseconds limit) {
    std::vector<std::string> args = {bin_, "serve", "--port-file", port_file_};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    pid_ = spawn(args, env_, log_file_, log_file_);
    const auto st = wait_for(pid_, limit);
    pid_ = -1;
    return st;
  }

  // SIGTERM, then waits up to `limit`. Returns the exit code, or nullopt (with `error`) when the
  // process did not exit in time (it is then killed) or ended by a signal.
  std::optional<int> terminate(std::chrono::milliseconds limit, std::string& error) {
    if (pid_ <= 0) {
      error = "not running";
      return std::nullopt;
    }
    ::kill(pid_, SIGTERM);
    const auto st = wait_for(pid_, limit);
    pid_ = -1;
    if (!st) {
      error = "did not exit within " + std::to_string(limit.count()) + " ms of SIGTERM";
      return std::nullopt;
    }
    if (WIFEXITED(*st)) return WEXITSTATUS(*st);
    error = "ended by signal " + std::to_string(WTERMSIG(*st));
    return std::nullopt;
  }

  bool signal(int sig) const { return pid_ > 0 && ::kill(pid_, sig) == 0; }

  // Waits up to `limit` for the process to end (polling every 2 ms), recording when it ended
  // (end_time()). When it has not ended by then it is left running (the destructor kills it).
  ExitInfo wait_exit(std::chrono::milliseconds limit) {
    using Clock = std::chrono::steady_clock;
    const auto ms_since = [](Clock::time_point t0, Clock::time_point t) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(t - t0).count();
    };
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
        info.waited_ms = ms_since(t0, end_time_);
        continue;
      }
      if (Clock::now() > deadline) {
        info.waited_ms = ms_since(t0, Clock::now());
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

  void kill_now() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
      pid_ = -1;
    }
  }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  // When wait_exit() saw the process end.
  std::chrono::steady_clock::time_point end_time() const { return end_time_; }
  std::string log() const { return read_file(log_file_); }
  const std::string& log_path() const { return log_file_; }

  HttpClient client(std::chrono::milliseconds timeout = std::chrono::seconds(30)) const {
    return HttpClient("127.0.0.1", port_, timeout);
  }

 private:
  std::string exited_early() {
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) != pid_) return {};
    pid_ = -1;
    return "the server exited during start-up (" + describe_status(st) + ")";
  }

  std::string bin_, port_file_, log_file_;
  Env env_;
  std::vector<std::string> extra_args_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  bool exited_ = false;  // as seen by wait_exit()
  int code_ = -1, signal_ = 0;
  std::chrono::steady_clock::time_point end_time_{};
};

// Prints the last `max_bytes` of the server's output to stderr.
inline void print_log(const ServerProcess& s, size_t max_bytes = 32 * 1024) {
  std::fprintf(stderr, "---- server output (%s) ----\n%s---- end of server output ----\n",
               s.log_path().c_str(), tail(s.log(), max_bytes).c_str());
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL URLs and psql
// ---------------------------------------------------------------------------------------------

// postgresql://[user[:password]@]host[:port][/db][?query]
struct PgUrl {
  std::string scheme = "postgresql", user, password, host = "127.0.0.1", port = "5432", db, query;

  static PgUrl parse(const std::string& url) {
    PgUrl u;
    const auto s = url.find("://");
    if (s == std::string::npos) throw std::invalid_argument("not a URL: " + url);
    u.scheme = url.substr(0, s);
    std::string rest = url.substr(s + 3);
    if (const auto q = rest.find('?'); q != std::string::npos) {
      u.query = rest.substr(q + 1);
      rest = rest.substr(0, q);
    }
    if (const auto slash = rest.find('/'); slash != std::string::npos) {
      u.db = rest.substr(slash + 1);
      rest = rest.substr(0, slash);
    }
    if (const auto at = rest.rfind('@'); at != std::string::npos) {
      const std::string cred = rest.substr(0, at);
      rest = rest.substr(at + 1);
      const auto colon = cred.find(':');
      u.user = cred.substr(0, colon);
      if (colon != std::string::npos) u.password = cred.substr(colon + 1);
    }
    if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
      u.port = rest.substr(colon + 1);
      rest = rest.substr(0, colon);
    }
    if (!rest.empty()) u.host = rest;
    return u;
  }

  std::string str() const {
    std::string s = scheme + "://";
    if (!user.empty()) {
      s += user;
      if (!password.empty()) s += ":" + password;
      s += "@";
    }
    s += host + ":" + port;
    if (!db.empty()) s += "/" + db;
    if (!query.empty()) s += "?" + query;
    return s;
  }
};

// Runs one SQL command with psql against `url` (ON_ERROR_STOP, unaligned tuples-only output).
inline CommandResult psql(const std::string& url, const std::string& sql, const std::string& dir) {
  return run_command(
      {"/usr/bin/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", url, "-c", sql},
      {{"PGCONNECT_TIMEOUT", "5"}}, dir, std::chrono::seconds(30));
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

inline rapidjson::Document parse_json(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.c_str(), text.size());
  return d;
}

inline rapidjson::Document parse(const HttpResponse& r) { return parse_json(r.body); }

// A short description for assertion messages.
inline std::string show(const HttpResponse& r) {
  return "HTTP " + std::to_string(r.status) + " body: " + r.body.substr(0, 2000);
}

// The value at a dotted path ("stages.ingest.processed"), or nullptr.
inline const rapidjson::Value* at_path(const rapidjson::Value& root, const std::string& path) {
  const rapidjson::Value* v = &root;
  size_t start = 0;
  for (;;) {
    const size_t dot = path.find('.', start);
    const std::string name =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!v->IsObject()) return nullptr;
    auto it = v->FindMember(name.c_str());
    if (it == v->MemberEnd()) return nullptr;
    v = &it->value;
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

// The number at `path` (integers and doubles), or nullopt.
inline std::optional<double> num_at(const rapidjson::Value& root, const std::string& path) {
  const rapidjson::Value* v = at_path(root, path);
  if (v == nullptr || !v->IsNumber()) return std::nullopt;
  return v->GetDouble();
}

inline int64_t int_at(const rapidjson::Value& root, const std::string& path) {
  const rapidjson::Value* v = at_path(root, path);
  return v != nullptr && v->IsInt64() ? v->GetInt64() : INT64_MIN;
}

inline std::string str_at(const rapidjson::Value& root, const std::string& path) {
  const rapidjson::Value* v = at_path(root, path);
  if (v == nullptr) return "<missing>";
  if (!v->IsString()) return "<not a string>";
  return v->GetString();
}

inline const std::vector<QuestionSpec>& default_questions() {
  static const std::vector<QuestionSpec> q = {
      {1, 4, 2, 1000, 20000},
      {2, 3, 0, 500, 10000},
      {3, 2, 1, 1, 1000},
  };
  return q;
}

inline const std::vector<RewardSpec>& default_rewards() {
  static const std::vector<RewardSpec> r = {{1, 1, "gold"}};
  return r;
}

// A quiz open from a minute ago for an hour, with default_questions().
inline std::string open_quiz_json(int64_t quiz_id,
                                  const std::vector<RewardSpec>& rewards = default_rewards()) {
  const int64_t now = wall_ms();
  return quiz_json(quiz_id, "e2e quiz " + std::to_string(quiz_id), now - 60'000, now + 3'600'000,
                   default_questions(), rewards);
}

struct AnswerSpec {
  std::string event_id;
  int64_t quiz_id;
  int64_t user_id;
  int question_id;
  int option_id;
  int64_t answered_at_ms;
  int64_t elapsed_ms;
};

inline std::string answer_json(const AnswerSpec& a) {
  return quizflow::tools::answer_json({a.event_id, a.quiz_id, a.user_id, a.question_id, a.option_id,
                                       rfc3339(a.answered_at_ms), a.elapsed_ms});
}

inline std::string batch_json(const std::vector<std::string>& items) {
  std::string s = R"({"answers":[)";
  for (size_t i = 0; i < items.size(); ++i) s += (i ? "," : "") + items[i];
  return s + "]}";
}

// Percent-encodes everything but unreserved characters (for query strings).
inline std::string url_encode(const std::string& s) {
  std::string out;
  for (const unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", ch);
      out += buf;
    }
  }
  return out;
}

// Quiz ids derived from the clock (ms × 1000 + a counter), so runs sharing a database do not clash
// (the other e2e files use ms × 100, a range far below this one).
inline int64_t next_quiz_id() {
  static const int64_t base = wall_ms() * 1000;
  static int64_t counter = 0;
  return base + counter++;
}

// Polls `probe` every `every` until it returns true or `limit` has passed; returns its last result.
template <typename F>
bool poll_until(std::chrono::milliseconds limit, F&& probe,
                std::chrono::milliseconds every = std::chrono::milliseconds(200)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (probe()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(every);
  }
}

// A database of its own, dropped (forcibly) on destruction.
class ScratchDatabase {
 public:
  ScratchDatabase(const std::string& admin_url, const std::string& dir)
      : admin_(admin_url), dir_(dir), name_("qf_e2e_" + random_hex(12)) {
    const CommandResult r = psql(admin_, "CREATE DATABASE " + name_, dir_);
    if (r.exit_code != 0) error_ = "CREATE DATABASE " + name_ + ": " + r.show();
    PgUrl u = PgUrl::parse(admin_url);
    u.db = name_;
    url_ = u.str();
  }
  ~ScratchDatabase() {
    if (!error_.empty()) return;
    const CommandResult r =
        psql(admin_, "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)", dir_);
    if (r.exit_code != 0)
      std::fprintf(stderr, "could not drop %s: %s\n", name_.c_str(), r.show().c_str());
  }
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;

  const std::string& name() const { return name_; }
  const std::string& url() const { return url_; }
  const std::string& error() const { return error_; }
  CommandResult admin(const std::string& sql) const { return psql(admin_, sql, dir_); }

 private:
  std::string admin_, dir_, name_, url_, error_;
};

// ---------------------------------------------------------------------------------------------
// What every test of a file needs before it starts, and the file's temporary directory
// ---------------------------------------------------------------------------------------------

// The quizflow binary, the admin database URL, the tools a file's tests run, and a temporary
// directory (kept when a test failed). `error` says what is missing: tests fail on it, never skip.
struct E2EPrereqs {
  std::string bin, db, dir, error;
  bool failed = false;
};

inline void find_prereqs(E2EPrereqs& r, const std::string& dir_prefix,
                         std::initializer_list<const char*> tools) {
  std::string e1, e2;
  r.bin = quizflow_bin(e1);
  r.db = database_url(e2);
  r.error = e1.empty() ? e2 : e1;
  for (const char* tool : tools)
    if (r.error.empty() && ::access(tool, X_OK) != 0)
      r.error = std::string(tool) + " is missing: these tests need it";
  if (r.error.empty()) {
    try {
      r.dir = make_temp_dir(dir_prefix);
    } catch (const std::exception& e) {
      r.error = e.what();
    }
  }
}

// Makes the directory at the start of every repetition (--gtest_repeat with
// --gtest_recreate_environments_when_repeating) and removes it at the end unless a test failed.
class PrereqsEnvironment : public ::testing::Environment {
 public:
  PrereqsEnvironment(E2EPrereqs& (*prereqs)(), std::string what)
      : prereqs_(prereqs), what_(std::move(what)) {}
  void SetUp() override {
    E2EPrereqs& p = prereqs_();
    if (p.dir.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(p.dir, ec);
    if (ec && p.error.empty()) p.error = "cannot make " + p.dir + ": " + ec.message();
  }
  void TearDown() override {
    const E2EPrereqs& p = prereqs_();
    if (p.dir.empty()) return;
    if (p.failed)
      std::fprintf(stderr, "%s files kept in %s\n", what_.c_str(), p.dir.c_str());
    else
      std::filesystem::remove_all(p.dir);
  }

 private:
  E2EPrereqs& (*prereqs_)();
  std::string what_;
};

}  // namespace qf_e2e
