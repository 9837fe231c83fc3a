#include "tools/http_client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

namespace quizflow::tools {
namespace {

constexpr size_t kMaxHead = 64 * 1024;

// The peer closed or reset the connection (as opposed to a timeout or a protocol error).
struct ConnectionLost : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool has_header(const HttpClient::Headers& h, std::string_view name) {
  return std::any_of(h.begin(), h.end(), [&](const auto& kv) { return iequals(kv.first, name); });
}

std::string errno_text(int err) { return std::strerror(err); }

bool is_lost(int err) { return err == EPIPE || err == ECONNRESET || err == ECONNABORTED; }

}  // namespace

const std::string* HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return &v;
  return nullptr;
}

Url parse_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() < kScheme.size() || !iequals(url.substr(0, kScheme.size()), kScheme))
    throw std::invalid_argument("URL must start with http://: " + std::string(url));
  std::string_view rest = url.substr(kScheme.size());
  Url u;
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) u.path = std::string(rest.substr(slash));
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos)
      throw std::invalid_argument("unterminated IPv6 literal in URL: " + std::string(url));
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        throw std::invalid_argument("unexpected text after host in URL: " + std::string(url));
      port_text = after.substr(1);
      if (port_text.empty()) throw std::invalid_argument("empty port in URL: " + std::string(url));
    }
  } else {
    const size_t colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) throw std::invalid_argument("empty port in URL: " + std::string(url));
    }
  }
  if (u.host.empty()) throw std::invalid_argument("no host in URL: " + std::string(url));
  if (!port_text.empty()) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), v);
    if (ec != std::errc() || p != port_text.data() + port_text.size() || v == 0 || v > 65535)
      throw std::invalid_argument("bad port in URL: " + std::string(url));
    u.port = static_cast<uint16_t>(v);
  }
  return u;
}

HttpClient::HttpClient(std::string host, uint16_t port, std::chrono::milliseconds timeout)
    : host_(std::move(host)), port_(port), timeout_(timeout) {}

HttpClient::~HttpClient() { close(); }

HttpClient::HttpClient(HttpClient&& o) noexcept
    : host_(std::move(o.host_)),
      port_(o.port_),
      timeout_(o.timeout_),
      fd_(std::exchange(o.fd_, -1)),
      buf_(std::move(o.buf_)) {}

HttpClient& HttpClient::operator=(HttpClient&& o) noexcept {
  if (this != &o) {
    close();
    host_ = std::move(o.host_);
    port_ = o.port_;
    timeout_ = o.timeout_;
    fd_ = std::exchange(o.fd_, -1);
    buf_ = std::move(o.buf_);
  }
  return *this;
}

void HttpClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buf_.clear();
}

void HttpClient::connect() {
  close();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(port_);
  if (int rc = ::getaddrinfo(host_.c_str(), port.c_str(), &hints, &res); rc != 0)
    throw std::runtime_error("cannot resolve " + host_ + ": " + gai_strerror(rc));
  std::string last_error = "no address";
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout_.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout_.count() % 1000) * 1000);
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last_error = errno_text(errno);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // also bounds connect()
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      fd_ = fd;
      break;
    }
    last_error = errno_text(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (fd_ < 0)
    throw std::runtime_error("cannot connect to " + host_ + ":" + port + ": " + last_error);
}

void HttpClient::send_all(std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    const int err = errno;
    if (n < 0 && err == EINTR) continue;
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK))
      throw std::runtime_error("send timed out after " + std::to_string(timeout_.count()) + " ms");
    if (n < 0 && is_lost(err)) throw ConnectionLost("send: " + errno_text(err));
    throw std::runtime_error("send: " + errno_text(err));
  }
}

bool HttpClient::fill() {
  char tmp[16384];
  for (;;) {
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n > 0) {
      buf_.append(tmp, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) return false;
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK)
      throw std::runtime_error("no response within " + std::to_string(timeout_.count()) + " ms");
    if (is_lost(err)) throw ConnectionLost("recv: " + errno_text(err));
    throw std::runtime_error("recv: " + errno_text(err));
  }
}

HttpResponse HttpClient::read_response(std::string_view method, bool& got_any) {
  for (;;) {  // loops over interim 1xx responses
    size_t head_end;
    while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (buf_.size() > kMaxHead) throw std::runtime_error("response head larger than 64 KiB");
      if (!fill()) {
        if (buf_.empty()) throw ConnectionLost("connection closed before a response");
        throw std::runtime_error("connection closed inside the response head");
      }
      got_any = true;
    }
    got_any = true;
    HttpResponse r;
    const std::string_view head(buf_.data(), head_end);
    size_t line_end = head.find("\r\n");
    const std::string_view status_line = head.substr(0, line_end);
    // "HTTP/1.1 200 OK"
    if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/")
      throw std::runtime_error("bad status line: " + std::string(status_line));
    const bool http10 = status_line.substr(0, 8) == "HTTP/1.0";
    const std::string_view code = status_line.substr(9, 3);
    auto [p, ec] = std::from_chars(code.data(), code.data() + 3, r.status);
    if (ec != std::errc() || p != code.data() + 3)
      throw std::runtime_error("bad status line: " + std::string(status_line));
    while (line_end != std::string_view::npos && line_end < head.size()) {
      const size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string_view line = head.substr(
          start, line_end == std::string_view::npos ? head.size() - start : line_end - start);
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      r.headers.emplace_back(lower(trim(line.substr(0, colon))),
                             std::string(trim(line.substr(colon + 1))));
    }
    buf_.erase(0, head_end + 4);
    if (r.status >= 100 && r.status < 200) continue;

    bool close_after = http10;
    if (const std::string* c = r.header("connection")) {
      if (iequals(*c, "close")) close_after = true;
      if (iequals(*c, "keep-alive")) close_after = false;
    }
    const bool no_body = method == "HEAD" || r.status == 204 || r.status == 304;
    const std::string* te = r.header("transfer-encoding");
    const std::string* cl = r.header("content-length");
    if (no_body) {
      // nothing to read
    } else if (te != nullptr && lower(*te).find("chunked") != std::string::npos) {
      for (;;) {
        size_t eol;
        while ((eol = buf_.find("\r\n")) == std::string::npos)
          if (!fill()) throw std::runtime_error("connection closed inside a chunked body");
        size_t size = 0;
        const char* b = buf_.data();
        auto [q, e2] = std::from_chars(b, b + eol, size, 16);
        if (e2 != std::errc() || q == b) throw std::runtime_error("bad chunk size line");
        buf_.erase(0, eol + 2);
        if (size == 0) {  // trailers until an empty line
          for (;;) {
            while ((eol = buf_.find("\r\n")) == std::string::npos)
              if (!fill()) throw std::runtime_error("connection closed inside chunk trailers");
            buf_.erase(0, eol + 2);
            if (eol == 0) break;
          }
          break;
        }
        while (buf_.size() < size + 2)
          if (!fill()) throw std::runtime_error("connection closed inside a chunk");
        r.body.append(buf_, 0, size);
        buf_.erase(0, size + 2);
      }
    } else if (cl != nullptr) {
      size_t n = 0;
      auto [q, e2] = std::from_chars(cl->data(), cl->data() + cl->size(), n);
      if (e2 != std::errc() || q != cl->data() + cl->size())
        throw std::runtime_error("bad Content-Length: " + *cl);
      while (buf_.size() < n)
        if (!fill())
          throw std::runtime_error("connection closed after " + std::to_string(buf_.size()) +
                                   " of " + std::to_string(n) + " body bytes");
      r.body.assign(buf_, 0, n);
      buf_.erase(0, n);
    } else {
      while (fill()) {
      }
      r.body = std::move(buf_);
      buf_.clear();
      close_after = true;
    }
    if (close_after) close();
    return r;
  }
}

HttpResponse HttpClient::request(std::string_view method, std::string_view path,
                                 std::string_view body, const Headers& headers) {
  std::string req;
  req.reserve(256 + body.size());
  req.append(method).append(" ").append(path).append(" HTTP/1.1\r\n");
  if (!has_header(headers, "host"))
    req.append("Host: ").append(host_).append(":").append(std::to_string(port_)).append("\r\n");
  if (!has_header(headers, "connection")) req.append("Connection: keep-alive\r\n");
  if (!has_header(headers, "content-length"))
    req.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  if (!body.empty() && !has_header(headers, "content-type"))
    req.append("Content-Type: application/json\r\n");
  for (const auto& [k, v] : headers) req.append(k).append(": ").append(v).append("\r\n");
  req.append("\r\n").append(body);

  for (int attempt = 0;; ++attempt) {
    const bool reused = fd_ >= 0;
    if (!reused) connect();
    bool got_any = false;
    try {
      std::string send_error;
      try {
        send_all(req);
      } catch (const ConnectionLost& e) {
        // The server may have answered early (e.g. 413) and closed: read what it sent.
        send_error = e.what();
      }
      try {
        return read_response(method, got_any);
      } catch (const ConnectionLost& e) {
        throw ConnectionLost(send_error.empty() ? e.what() : send_error);
      }
    } catch (const ConnectionLost& e) {
      close();
      if (reused && !got_any && attempt == 0) continue;  // stale keep-alive socket: retry once
      throw std::runtime_error(std::string(method) + " " + std::string(path) + " to " + host_ +
                               ":" + std::to_string(port_) + ": " + e.what());
    } catch (const std::exception& e) {
      close();
      throw std::runtime_error(std::string(method) + " " + std::string(path) + " to " + host_ +
                               ":" + std::to_string(port_) + ": " + e.what());
    }
  }
}

}  // namespace quizflow::tools
