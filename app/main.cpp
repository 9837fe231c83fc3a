// quizflow command line: serve, migrate, check-config, export.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "egress/kafka_producer.h"
#include "egress/pg_store.h"
#include "ingress/event_file.h"
#include "ingress/http_server.h"
#include "pipeline/engine.h"
#include "pipeline/logging.h"

namespace {

using namespace quizflow;

constexpr const char* kUsage = R"(usage: quizflow <command> [--config FILE] [options]

commands:
  serve          run the engine: HTTP API, the flow graph, PostgreSQL and Kafka
                 --port-file FILE   write the bound HTTP port to FILE once listening
  migrate        apply pending schema migrations and exit
  check-config   print the effective configuration (secrets masked); non-zero if invalid
  export         write the event log as JSON lines (one answer per line, the POST /v1/answers
                 shape), quiz by quiz; progress and a summary on standard error
                 --quiz ID          only this quiz (repeatable; default: every quiz)
                 --to PATH          the file to write (default: standard output); written
                                    to PATH.partial first, renamed when complete

Configuration comes from the JSON file given with --config and the environment (environment
wins); see docs/configuration.md for every key and its default.
)";

std::unique_ptr<Store> make_store(const Config& c) {
  if (c.database_url.empty()) throw ConfigError("DATABASE_URL", "is required for this command");
  return std::make_unique<egress::PgStore>(egress::pool_options(c));
}

std::atomic<bool>& drained_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}

int serve(const Config& c, const std::string& port_file) {
  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  spdlog::info("quizflow starting: database {}, http {}", mask_url(c.database_url), c.http_addr);
  spdlog::info("effective configuration: {}", describe_config(c));
  auto store = make_store(c);
  auto sink = std::make_unique<egress::KafkaProducer>(egress::kafka_options(c));
  Engine engine(c, std::move(store), std::move(sink));
  if (Status st = engine.start(); !st.ok()) {
    spdlog::critical("quizflow serve: the engine could not start: {}", st.to_string());
    return 1;
  }
  ingress::HttpServer http(engine);
  http.start();
  if (!port_file.empty()) {
    std::ofstream(port_file) << http.port() << "\n";
  }
  spdlog::info("quizflow serving on port {}", http.port());

  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("signal {} received: draining (a second signal forces exit)", sig);
  // A second signal while draining ends the process at once.
  std::thread([sigs] {
    int s2 = 0;
    sigwait(&sigs, &s2);
    spdlog::warn("second signal: exiting without draining");
    _exit(1);
  }).detach();
  http.refuse_new_work();  // new answers get 503 + Retry-After from now on
  // Every admitted request is answered before stop() returns; bounded by the drain timeout.
  std::thread watchdog([ms = c.drain_timeout_ms, done = &drained_flag()] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!done->load() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!done->load()) {
      spdlog::error("drain did not finish within {} ms (QUIZFLOW_DRAIN_TIMEOUT_MS): exiting", ms);
      spdlog::default_logger()->flush();
      _exit(1);
    }
  });
  engine.stop();
  drained_flag().store(true);
  watchdog.join();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the last responses leave
  http.shutdown();
  spdlog::info("quizflow stopped");
  return 0;
}

int export_events(const Config& c, const std::vector<int64_t>& quizzes, const std::string& to) {
  auto store = make_store(c);
  std::ofstream file;
  std::ostream* out = &std::cout;
  const std::string partial = to.empty() ? "" : to + ".partial";
  if (!to.empty()) {
    file.open(partial, std::ios::binary | std::ios::trunc);
    if (!file) {
      spdlog::critical("quizflow export: cannot write {}", partial);
      return 1;
    }
    out = &file;
  }
  auto r = ingress::export_events(*store, quizzes, *out, [](int64_t n, double secs) {
    spdlog::info("export: {} events so far ({:.0f} events/s)", n, n / std::max(secs, 1e-9));
  });
  if (r.ok() && !to.empty()) {
    file.close();
    if (!file || std::rename(partial.c_str(), to.c_str()) != 0)
      r = Status::internal("could not finish " + to);
  }
  if (!r.ok()) {
    if (!partial.empty()) std::remove(partial.c_str());
    spdlog::critical("quizflow export failed: {}", r.status().to_string());
    return 1;
  }
  spdlog::info("export: {} events of {} quizzes in {:.1f} s ({:.0f} events/s)", r->events,
               r->quizzes, r->seconds, r->events / std::max(r->seconds, 1e-9));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  std::string config_path, port_file, to;
  std::vector<int64_t> quizzes;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (args[i] == "--port-file" && i + 1 < args.size()) {
      port_file = args[++i];
    } else if (args[i] == "--to" && i + 1 < args.size() && cmd == "export") {
      to = args[++i];
    } else if (args[i] == "--quiz" && i + 1 < args.size() && cmd == "export") {
      const std::string& v = args[++i];
      char* end = nullptr;
      errno = 0;
      const long long id = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || errno != 0 || id < 1) {
        std::fprintf(stderr, "quizflow: --quiz wants a quiz id (1 … 2^63-1), not '%s'\n",
                     v.c_str());
        return 2;
      }
      quizzes.push_back(id);
    } else {
      std::fprintf(stderr, "quizflow: unknown argument '%s'\n%s", args[i].c_str(), kUsage);
      return 2;
    }
  }
  Config c;
  try {
    c = load_config(config_path);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "quizflow: invalid configuration: %s\n", e.what());
    return 3;
  }
  setup_logging(c, /*to_stderr=*/cmd == "export");
  try {
    if (cmd == "check-config") {
      std::printf("%s\n", describe_config(c).c_str());
      return 0;
    }
    if (cmd == "migrate") {
      if (Status st = make_store(c)->migrate(); !st.ok()) {
        spdlog::critical("quizflow migrate failed: {}", st.to_string());
        return 1;
      }
      spdlog::info("migrations applied");
      return 0;
    }
    if (cmd == "serve") return serve(c, port_file);
    if (cmd == "export") return export_events(c, quizzes, to);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "quizflow: invalid configuration: %s\n", e.what());
    return 3;
  } catch (const std::exception& e) {
    spdlog::critical("quizflow {} failed: {}", cmd, e.what());
    return 1;
  }
  std::fprintf(stderr, "quizflow: unknown command '%s'\n%s", cmd.c_str(), kUsage);
  return 2;
}
