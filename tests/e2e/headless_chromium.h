// A headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe
// (`--remote-debugging-pipe`: JSON messages ended by a NUL byte, the browser reading fd 3 and
// writing fd 4), for tests that look at a page the engine serves (status_page_test.cpp).
//
// Why not `--dump-dom` / `--screenshot` with `--virtual-time-budget`: under virtual time a page's
// one-second timers fire as soon as the page is idle, so a page that polls every second takes its
// samples a few real milliseconds apart and every rate it computes is meaningless. Here the page
// runs in real time; the test asks for what it shows (Runtime.evaluate) whenever it likes, with a
// deadline on every call.
//
// The browser runs in a process group of its own with a fresh profile directory under `dir`;
// the destructor closes it (Browser.close), kills the group when it does not exit within 5 s,
// and removes the profile. Its stdout and stderr (noisy) go to `dir`/chromium.log. Not
// thread-safe: one thread drives it.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "e2e/server_fixture.h"

namespace qf_e2e {

// The chromium binary: $QF_CHROMIUM, else /usr/bin/chromium; empty (with `error`) when missing.
inline std::string chromium_bin(std::string& error) {
  const char* env = std::getenv("QF_CHROMIUM");
  const std::string bin = env != nullptr && *env != '\0' ? env : "/usr/bin/chromium";
  if (::access(bin.c_str(), X_OK) != 0) {
    error = bin + " is missing: the status page tests need Debian's chromium (scripts/setup)";
    return {};
  }
  return bin;
}

class HeadlessChromium {
 public:
  using Clock = std::chrono::steady_clock;

  HeadlessChromium(std::string bin, std::string dir)
      : bin_(std::move(bin)), dir_(std::move(dir)), profile_(dir_ + "/chromium-profile") {}

  ~HeadlessChromium() { stop(); }

  HeadlessChromium(const HeadlessChromium&) = delete;
  HeadlessChromium& operator=(const HeadlessChromium&) = delete;

  // Starts the browser and opens a page of width × height CSS pixels at `url`. Returns an empty
  // string, or what went wrong.
  std::string open(const std::string& url, int width, int height,
                   std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    if (std::string why = start(); !why.empty()) return why;
    std::string error;
    rapidjson::Document r =
        call("Target.createTarget", R"({"url":"about:blank"})", {}, limit, error);
    if (!error.empty()) return error;
    if (!r.HasMember("targetId") || !r["targetId"].IsString()) return "no targetId: " + to_json(r);
    const std::string target = r["targetId"].GetString();
    r = call("Target.attachToTarget", R"({"targetId":")" + target + R"(","flatten":true})", {},
             limit, error);
    if (!error.empty()) return error;
    if (!r.HasMember("sessionId") || !r["sessionId"].IsString())
      return "no sessionId: " + to_json(r);
    session_ = r["sessionId"].GetString();
    call("Emulation.setDeviceMetricsOverride",
         R"({"width":)" + std::to_string(width) + R"(,"height":)" + std::to_string(height) +
             R"(,"deviceScaleFactor":1,"mobile":false})",
         session_, limit, error);
    if (!error.empty()) return error;
    r = call("Page.navigate", R"({"url":)" + json_string(url) + "}", session_, limit, error);
    if (!error.empty()) return error;
    if (r.HasMember("errorText"))
      return "Page.navigate: " + std::string(r["errorText"].GetString());
    return {};
  }

  // Evaluates `expression`, which must yield a string, in the page; nullopt (with `error`) when
  // it threw, yielded something else or the browser did not answer within `limit`.
  std::optional<std::string> eval_string(
      const std::string& expression, std::string& error,
      std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    error.clear();
    const rapidjson::Document r =
        call("Runtime.evaluate",
             R"({"returnByValue":true,"expression":)" + json_string(expression) + "}", session_,
             limit, error);
    if (!error.empty()) return std::nullopt;
    if (r.HasMember("exceptionDetails")) {
      error = "the expression threw: " + to_json(r["exceptionDetails"]);
      return std::nullopt;
    }
    if (!r.HasMember("result") || !r["result"].HasMember("value") ||
        !r["result"]["value"].IsString()) {
      error = "the expression did not yield a string: " + to_json(r);
      return std::nullopt;
    }
    return std::string(r["result"]["value"].GetString(), r["result"]["value"].GetStringLength());
  }

  // Writes a PNG of the page's viewport to `path`. Returns an empty string, or what went wrong.
  std::string screenshot(const std::string& path,
                         std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    std::string error;
    const rapidjson::Document r =
        call("Page.captureScreenshot", R"({"format":"png"})", session_, limit, error);
    if (!error.empty()) return error;
    if (!r.HasMember("data") || !r["data"].IsString()) return "no data: " + to_json(r);
    const std::string png = base64_decode(r["data"].GetString());
    if (png.empty()) return "the screenshot is not base64";
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    write_file(path, png);
    return std::filesystem::file_size(path, ec) == png.size() ? "" : "cannot write " + path;
  }

  std::string log() const { return read_file(dir_ + "/chromium.log"); }

  void stop() {
    if (pid_ > 0) {
      std::string ignored;
      if (fd_ >= 0) call("Browser.close", "{}", {}, std::chrono::seconds(5), ignored);
      // Waits for the browser to exit without reaping it: while it is a zombie its process
      // group id cannot be reused, so killing the group hits only its own helpers.
      const auto deadline = Clock::now() + std::chrono::seconds(5);
      siginfo_t info{};
      while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
             info.si_pid == 0 && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ::kill(-pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
      pid_ = -1;
    }
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    std::error_code ec;
    std::filesystem::remove_all(profile_, ec);
  }

 private:
  std::string start() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      return "socketpair: " + std::string(std::strerror(errno));
    // Above the descriptors the child gets (0-4), so that its dup2s cannot clobber one another.
    const int child = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    ::close(sv[1]);
    fd_ = sv[0];
    std::vector<std::string> args = {bin_,
                                     "--headless",
                                     "--no-sandbox",
                                     "--disable-gpu",
                                     "--no-first-run",
                                     "--disable-background-networking",
                                     "--disable-component-update",
                                     "--disable-sync",
                                     "--disable-extensions",
                                     "--disable-default-apps",
                                     "--mute-audio",
                                     "--user-data-dir=" + profile_,
                                     "--remote-debugging-pipe",
                                     "about:blank"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env = build_env({});
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string log_path = dir_ + "/chromium.log";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_adddup2(&fa, child, 3);  // the browser reads commands here
    posix_spawn_file_actions_adddup2(&fa, child, 4);  // and writes answers here
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    const int rc = ::posix_spawn(&pid_, bin_.c_str(), &fa, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    ::close(child);
    if (rc != 0) {
      pid_ = -1;
      return "cannot start " + bin_ + ": " + std::strerror(rc);
    }
    return {};
  }

  // Sends one command and waits for its answer (events in between are dropped). Returns its
  // `result`; sets `error` on an error answer, a timeout or a broken pipe.
  rapidjson::Document call(const std::string& method, const std::string& params,
                           const std::string& session, std::chrono::milliseconds limit,
                           std::string& error) {
    rapidjson::Document out;
    out.SetObject();
    const int64_t id = ++next_id_;
    std::string msg =
        R"({"id":)" + std::to_string(id) + R"(,"method":")" + method + R"(","params":)" + params;
    if (!session.empty()) msg += R"(,"sessionId":")" + session + "\"";
    msg += "}";
    msg.push_back('\0');
    for (size_t off = 0; off < msg.size();) {
      const ssize_t n = ::send(fd_, msg.data() + off, msg.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error = method + ": the browser's pipe is closed (" + std::strerror(errno) + ")";
        return out;
      }
      off += static_cast<size_t>(n);
    }
    const auto deadline = Clock::now() + limit;
    for (;;) {
      size_t end;
      while ((end = buf_.find('\0')) == std::string::npos) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
          error = method + ": no answer from the browser within " + std::to_string(limit.count()) +
                  " ms";
          return out;
        }
        pollfd p{fd_, POLLIN, 0};
        const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno != EINTR) {
          error = method + ": poll: " + std::strerror(errno);
          return out;
        }
        if (ready <= 0) continue;
        char tmp[65536];
        const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          error = method + ": the browser closed its pipe";
          return out;
        }
        buf_.append(tmp, static_cast<size_t>(n));
      }
      rapidjson::Document d;
      d.Parse(buf_.data(), end);
      buf_.erase(0, end + 1);
      if (d.HasParseError() || !d.IsObject() || !d.HasMember("id") || !d["id"].IsInt64() ||
          d["id"].GetInt64() != id)
        continue;  // an event, or the answer of an earlier call that timed out
      if (d.HasMember("error")) {
        error = method + ": " + to_json(d["error"]);
        return out;
      }
      if (d.HasMember("result") && d["result"].IsObject())
        out.CopyFrom(d["result"], out.GetAllocator());
      return out;
    }
  }

  static std::string json_string(const std::string& s) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
    return sb.GetString();
  }

  static std::string to_json(const rapidjson::Value& v) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    v.Accept(w);
    return sb.GetString();
  }

  // Empty when `in` is not base64.
  static std::string base64_decode(std::string_view in) {
    auto value = [](char c) -> int {
      if (c >= 'A' && c <= 'Z') return c - 'A';
      if (c >= 'a' && c <= 'z') return c - 'a' + 26;
      if (c >= '0' && c <= '9') return c - '0' + 52;
      if (c == '+') return 62;
      if (c == '/') return 63;
      return -1;
    };
    std::string out;
    out.reserve(in.size() / 4 * 3);
    uint32_t acc = 0;
    int bits = 0;
    for (const char c : in) {
      if (c == '=') break;
      const int v = value(c);
      if (v < 0) return {};
      acc = (acc << 6) | static_cast<uint32_t>(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out.push_back(static_cast<char>((acc >> bits) & 0xFF));
      }
    }
    return out;
  }

  std::string bin_, dir_, profile_;
  pid_t pid_ = -1;
  int fd_ = -1;  // our end of the socket the browser reads (fd 3) and writes (fd 4)
  std::string session_;
  int64_t next_id_ = 0;
  std::string buf_;
};

}  // namespace qf_e2e
