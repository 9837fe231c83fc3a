// qf-bare-pistache: the HTTP ceiling for quizflow's answer path. A bare Pistache server with the
// same endpoint options as quizflow's ingress (thread count, raised maxRequestSize, short header
// and body timeouts) that answers
//   POST /v1/answers  parse the body with RapidJSON (one answer object, or {"answers":[…]}) and
//                     reply 200 with a quizflow-shaped body: counts and one result per item;
//                     400 when the body is not JSON or not an object
//   GET  /health      {"status":"healthy"}
// and nothing else (404). No engine, no database: what is left is Pistache's own cost plus one
// JSON parse and one small JSON reply, which is what qf-http-load --target bare measures.
//
// Usage: qf-bare-pistache --port P [--host 127.0.0.1] [--threads 2] [--port-file FILE]
//                         [--max-body BYTES]
// Stops on SIGTERM or SIGINT.
#include <pistache/endpoint.h>
#include <pistache/http.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>

namespace {

using namespace Pistache;

constexpr const char* kUsage =
    R"(usage: qf-bare-pistache --port P [--host H] [--threads N] [--port-file FILE] [--max-body B]

A bare Pistache server (the ceiling for quizflow's POST /v1/answers): parses each POST
/v1/answers body with RapidJSON and answers 200 with a small quizflow-shaped JSON body;
GET /health answers {"status":"healthy"}. Stops on SIGTERM/SIGINT.

  --port       TCP port, 0 picks a free one (required)
  --host       listen address (default 127.0.0.1)
  --threads    Pistache worker threads (default 2, quizflow's default QUIZFLOW_HTTP_THREADS)
  --port-file  write the bound port to FILE once listening
  --max-body   largest body accepted in bytes (default 1048576, quizflow's default)
)";

struct Options {
  std::string host = "127.0.0.1";
  int port = -1;
  int threads = 2;
  long max_body = 1 << 20;
  std::string port_file;
};

bool parse_long(const char* s, long lo, long hi, long& out) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return false;
  out = v;
  return true;
}

void send_json(Http::ResponseWriter& w, Http::Code code, const std::string& body) {
  w.headers().add<Http::Header::ContentType>(MIME(Application, Json));
  w.send(code, body);
}

class Handler : public Http::Handler {
 public:
  HTTP_PROTOTYPE(Handler)

  explicit Handler(long max_body) : max_body_(max_body) {}

  void onRequest(const Http::Request& req, Http::ResponseWriter w) override {
    const std::string& res = req.resource();
    if (res == "/health" && req.method() == Http::Method::Get)
      return send_json(w, Http::Code::Ok, R"({"status":"healthy"})");
    if (res == "/v1/answers" && req.method() == Http::Method::Post) return answers(req, w);
    send_json(w, Http::Code::Not_Found,
              R"({"error":{"code":"not_found","message":"no such endpoint"}})");
  }

  void onTimeout(const Http::Request&, Http::ResponseWriter w) override {
    send_json(w, Http::Code::Request_Timeout,
              R"({"error":{"code":"timeout","message":"no complete request in time"}})");
  }

 private:
  void answers(const Http::Request& req, Http::ResponseWriter& w) {
    const std::string& body = req.body();
    if (static_cast<long>(body.size()) > max_body_)
      return send_json(w, Http::Code::Request_Entity_Too_Large,
                       R"({"error":{"code":"too_large","message":"body too large"}})");
    rapidjson::Document d;
    d.Parse(body.data(), body.size());
    if (d.HasParseError() || !d.IsObject())
      return send_json(w, Http::Code::Bad_Request,
                       R"({"error":{"code":"malformed_json","message":"not a JSON object"}})");
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> out(sb);
    auto result = [&out](const rapidjson::Value& item) {
      out.StartObject();
      out.Key("event_id");
      const auto id = item.IsObject() ? item.FindMember("event_id") : item.MemberEnd();
      if (item.IsObject() && id != item.MemberEnd() && id->value.IsString())
        out.String(id->value.GetString(), id->value.GetStringLength());
      else
        out.String("");
      out.Key("status");
      out.String("accepted");
      out.EndObject();
    };
    const auto list = d.FindMember("answers");
    const bool batch = list != d.MemberEnd() && list->value.IsArray();
    const unsigned n = batch ? list->value.Size() : 1;
    out.StartObject();
    out.Key("accepted");
    out.Uint(n);
    out.Key("duplicates");
    out.Uint(0);
    out.Key("rejected");
    out.Uint(0);
    out.Key("results");
    out.StartArray();
    if (batch) {
      for (const auto& item : list->value.GetArray()) result(item);
    } else {
      result(d);
    }
    out.EndArray();
    out.EndObject();
    send_json(w, Http::Code::Ok, std::string(sb.GetString(), sb.GetSize()));
  }

  long max_body_;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "qf-bare-pistache: %s needs a value\n%s", a.c_str(), kUsage);
      return 2;
    }
    const char* v = argv[++i];
    long n = 0;
    bool ok = true;
    if (a == "--port") {
      ok = parse_long(v, 0, 65535, n);
      o.port = static_cast<int>(n);
    } else if (a == "--threads") {
      ok = parse_long(v, 1, 64, n);
      o.threads = static_cast<int>(n);
    } else if (a == "--max-body") {
      ok = parse_long(v, 1024, 64L << 20, n);
      o.max_body = n;
    } else if (a == "--host") {
      o.host = v;
    } else if (a == "--port-file") {
      o.port_file = v;
    } else {
      std::fprintf(stderr, "qf-bare-pistache: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
    if (!ok) {
      std::fprintf(stderr, "qf-bare-pistache: bad value '%s' for %s\n%s", v, a.c_str(), kUsage);
      return 2;
    }
  }
  if (o.port < 0) {
    std::fprintf(stderr, "qf-bare-pistache: --port is required\n%s", kUsage);
    return 2;
  }

  // Block the stop signals before Pistache starts its threads, so only sigwait() sees them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  try {
    Http::Endpoint endpoint(Address(o.host, Port(static_cast<uint16_t>(o.port))));
    // The same options as quizflow's ingress: the whole request (headers + body) must fit
    // maxRequestSize (Pistache's default is 4 KiB), and slow clients are cut off early.
    auto opts = Http::Endpoint::options()
                    .threads(o.threads)
                    .flags(Tcp::Options::ReuseAddr)
                    .maxRequestSize(static_cast<size_t>(o.max_body) + 16 * 1024)
                    .maxResponseSize(16 << 20)
                    .headerTimeout(std::chrono::milliseconds(10000))
                    .bodyTimeout(std::chrono::milliseconds(20000))
                    .keepaliveTimeout(std::chrono::milliseconds(60000));
    endpoint.init(opts);
    endpoint.setHandler(Http::make_handler<Handler>(o.max_body));
    endpoint.serveThreaded();
    const int port = static_cast<int>(static_cast<uint16_t>(endpoint.getPort()));
    if (!o.port_file.empty()) std::ofstream(o.port_file) << port << "\n";
    std::fprintf(stderr, "qf-bare-pistache: listening on %s:%d with %d threads\n", o.host.c_str(),
                 port, o.threads);
    int sig = 0;
    sigwait(&stop, &sig);
    std::fprintf(stderr, "qf-bare-pistache: signal %d, stopping\n", sig);
    endpoint.shutdown();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qf-bare-pistache: %s\n", e.what());
    return 1;
  }
  return 0;
}
