// The HTTP client of tools/ (used by the e2e tests and quizflow-demo) against a scripted loopback
// server: keep-alive reuse, reconnect once after the server closed an idle connection, chunked
// bodies, timeouts, URL parsing. Needs no quizflow server.
#include "tools/http_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using quizflow::tools::HttpClient;
using quizflow::tools::parse_url;
using namespace std::chrono_literals;

// Accepts connections on 127.0.0.1 and hands each to `serve` (one at a time, on one thread).
class ScriptedServer {
 public:
  explicit ScriptedServer(std::function<void(int fd, int conn_no)> serve)
      : serve_(std::move(serve)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0)
      throw std::runtime_error("bind/listen failed");
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      for (int n = 0;; ++n) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        connections_.fetch_add(1);
        serve_(c, n);
        ::close(c);
      }
    });
  }
  ~ScriptedServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  uint16_t port() const { return port_; }
  int connections() const { return connections_.load(); }

 private:
  std::function<void(int, int)> serve_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> connections_{0};
  std::thread thread_;
};

// Reads one request head plus its Content-Length body; returns the raw text ("" on EOF).
std::string read_request(int fd) {
  std::string buf;
  char tmp[4096];
  size_t need = std::string::npos;
  for (;;) {
    const size_t head = buf.find("\r\n\r\n");
    if (head != std::string::npos && need == std::string::npos) {
      need = head + 4;
      const size_t cl = buf.find("Content-Length: ");
      if (cl != std::string::npos && cl < head) need += std::stoul(buf.substr(cl + 16));
    }
    if (need != std::string::npos && buf.size() >= need) return buf;
    const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return {};
    buf.append(tmp, static_cast<size_t>(n));
  }
}

void send_text(int fd, const std::string& s) { ::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }

TEST(HttpClient, SendsKeepAliveAndContentHeadersAndReusesTheConnection) {
  std::string seen;
  ScriptedServer srv([&](int fd, int) {
    for (;;) {
      const std::string req = read_request(fd);
      if (req.empty()) return;
      seen += req;
      send_text(fd,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Thing:  v \r\n"
                "Content-Length: 2\r\n\r\n{}");
    }
  });
  HttpClient c("127.0.0.1", srv.port());
  auto r = c.request("POST", "/v1/answers", R"({"a":1})", {{"Authorization", "Bearer t"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{}");
  ASSERT_NE(r.header("X-THING"), nullptr);
  EXPECT_EQ(*r.header("x-thing"), "v");
  EXPECT_EQ(r.headers[1].first, "x-thing");
  r = c.request("GET", "/health");
  EXPECT_EQ(r.status, 200);
  c.close();
  EXPECT_EQ(srv.connections(), 1);
  EXPECT_NE(seen.find("POST /v1/answers HTTP/1.1\r\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("Connection: keep-alive\r\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("Content-Length: 7\r\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("Content-Type: application/json\r\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("Authorization: Bearer t\r\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("GET /health HTTP/1.1\r\n"), std::string::npos) << seen;
}

TEST(HttpClient, ReconnectsOnceWhenTheServerClosedAnIdleConnection) {
  // Every connection gets one response and is then closed without "Connection: close".
  ScriptedServer srv([](int fd, int n) {
    if (read_request(fd).empty()) return;
    send_text(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(std::to_string(n).size()) +
                      "\r\n\r\n" + std::to_string(n));
  });
  HttpClient c("127.0.0.1", srv.port());
  EXPECT_EQ(c.request("GET", "/").body, "0");
  std::this_thread::sleep_for(50ms);  // let the close arrive
  EXPECT_EQ(c.request("GET", "/").body, "1");
  EXPECT_EQ(srv.connections(), 2);
}

TEST(HttpClient, DecodesChunkedBodiesAndSkipsInterimResponses) {
  ScriptedServer srv([](int fd, int) {
    if (read_request(fd).empty()) return;
    send_text(fd, "HTTP/1.1 100 Continue\r\n\r\n");
    send_text(fd,
              "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n");
  });
  HttpClient c("127.0.0.1", srv.port());
  const auto r = c.request("POST", "/x", "{}");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, "hello, world");
}

TEST(HttpClient, ReadsUntilCloseWithoutLengthAndHonoursConnectionClose) {
  ScriptedServer srv([](int fd, int) {
    if (read_request(fd).empty()) return;
    send_text(fd, "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n\r\ntoo big");
  });
  HttpClient c("127.0.0.1", srv.port());
  const auto r = c.request("POST", "/x", std::string(1000, 'x'));
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.body, "too big");
}

TEST(HttpClient, TimesOutWhenNoResponseComes) {
  ScriptedServer srv([](int fd, int) {
    read_request(fd);
    char b;
    while (::recv(fd, &b, 1, 0) > 0) {
    }  // never answers; returns when the client gives up and closes
  });
  HttpClient c("127.0.0.1", srv.port(), 200ms);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    c.request("GET", "/");
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no response within 200 ms"), std::string::npos)
        << e.what();
  }
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 5s);
}

TEST(HttpClient, ThrowsWhenNothingListens) {
  uint16_t port;
  {
    ScriptedServer srv([](int, int) {});
    port = srv.port();
  }
  HttpClient c("127.0.0.1", port);
  EXPECT_THROW(c.request("GET", "/"), std::runtime_error);
}

TEST(ParseUrl, SplitsHostPortAndPath) {
  auto u = parse_url("http://127.0.0.1:8000");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 8000);
  EXPECT_EQ(u.path, "/");
  u = parse_url("HTTP://localhost/v1/x?y=1");
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.port, 80);
  EXPECT_EQ(u.path, "/v1/x?y=1");
  u = parse_url("http://[::1]:9/");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 9);
  for (const char* bad : {"https://a:1", "127.0.0.1:8000", "http://:80", "http://a:", "http://a:0",
                          "http://a:65536", "http://a:12x", "http://[::1"})
    EXPECT_THROW(parse_url(bad), std::invalid_argument) << bad;
}

}  // namespace
