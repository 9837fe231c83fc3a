// A minimal blocking HTTP/1.1 client for talking to a quizflow server on loopback (the demo and
// the end-to-end tests). Plain POSIX sockets, no third-party code. Not a general-purpose client:
// no TLS, no redirects, no proxies.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace quizflow::tools {

struct HttpResponse {
  int status = 0;
  // Header names lower-cased, values with surrounding blanks trimmed, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The first header called `name` (compared case-insensitively), or nullptr.
  const std::string* header(std::string_view name) const;
};

// "http://host:port[/path]" split into parts. The port defaults to 80, the path to "/".
struct Url {
  std::string host;
  uint16_t port = 80;
  std::string path = "/";
};

// Parses an http:// URL (IPv6 literals as "[::1]"). Throws std::invalid_argument when malformed
// or when the scheme is not http.
Url parse_url(std::string_view url);

// One keep-alive connection to host:port, opened on first use. Not thread-safe: use one client
// per thread. Movable, not copyable; the destructor closes the socket.
class HttpClient {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  HttpClient(std::string host, uint16_t port,
             std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  HttpClient(HttpClient&& other) noexcept;
  HttpClient& operator=(HttpClient&& other) noexcept;

  // Sends one request and reads the whole response (by Content-Length, chunked encoding, or until
  // the server closes). Always sends "Connection: keep-alive" and "Content-Length"; adds
  // "Content-Type: application/json" when a body is given and `headers` has no Content-Type.
  // If a reused connection turns out to have been closed by the server before any response byte
  // arrived, reconnects and sends the request once more. Throws std::runtime_error on connection
  // failure, timeout (send or receive) or an unparsable response.
  HttpResponse request(std::string_view method, std::string_view path, std::string_view body = {},
                       const Headers& headers = {});

  // Closes the connection now (the next request opens a new one).
  void close();

  const std::string& host() const { return host_; }
  uint16_t port() const { return port_; }

 private:
  void connect();
  void send_all(std::string_view data);
  // Reads the response; `got_any` tells whether any byte arrived before a failure.
  HttpResponse read_response(std::string_view method, bool& got_any);
  // Appends received bytes to buf_; returns false on orderly close by the peer.
  bool fill();

  std::string host_;
  uint16_t port_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  std::string buf_;  // received bytes not consumed yet
};

}  // namespace quizflow::tools
