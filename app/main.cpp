// quizflow command line: serve, migrate, check-config, export, replay, import.
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
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "egress/kafka_producer.h"
#include "egress/pg_store.h"
#include "ingress/event_file.h"
#include "ingress/http_server.h"
#include "ingress/kafka_answers.h"
#include "ingress/kafka_source.h"
#include "pipeline/engine.h"
#include "pipeline/logging.h"
#include "pipeline/replay.h"

namespace {

using namespace quizflow;

constexpr const char* kUsage = R"(usage: quizflow <command> [--config FILE] [options]

commands:
  serve          run the engine: HTTP API, the flow graph, PostgreSQL and Kafka
                 --port-file FILE   write the bound HTTP port to FILE once listening
  migrate        apply pending schema migrations and exit
  check-config   print the effective configuration (secrets masked); non-zero if invalid
  export         write the event log as JSON lines, quiz by quiz: a quiz line (definition,
                 state, rewards granted), then its answers (the POST /v1/answers shape);
                 progress and a summary on standard error
                 --quiz ID          only this quiz (repeatable; default: every quiz)
                 --to PATH          the file to write (default: standard output); written
                                    to PATH.partial first, renamed when complete
  replay         rebuild standings from the event log with the live rules, quiz by quiz,
                 while serve runs (each quiz held for its rebuild); prints what changed; exit
                 0 when nothing changed, 10 when something did
                 --dry-run          compare only, change nothing
                 --quiz ID          only this quiz (repeatable; default: every quiz)
                 --jobs N           quizzes rebuilt at once from the log, a connection
                                    each (default 2)
                 --from log         read the event log (the default)
                 --from file:PATH   read an export file: its quizzes and answers are added
                                    to the database (stored ones kept) and rebuilt
  import PATH    the same as replay --from file:PATH, exit 0 when it went through
                 (--dry-run and --quiz as for replay)

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
  const std::string bootstrap = sink->bootstrap();
  Engine engine(c, std::move(store), std::move(sink));
  // QUIZFLOW_CONSUME_ANSWERS: a consumer group member on quiz.answers (its offsets read and
  // pruned through a store of its own; stored by the engine's batch transactions).
  std::unique_ptr<Store> source_store;
  std::unique_ptr<ingress::KafkaSource> source;
  if (c.consume_answers) {
    source_store = make_store(c);
    source = std::make_unique<ingress::KafkaSource>(engine, *source_store,
                                                    ingress::kafka_source_options(c, bootstrap));
    engine.set_consumer(ConsumerHooks{[s = source.get()] { return s->settled(); },
                                      [s = source.get()] { return s->stats(); }});
  }
  if (Status st = engine.start(); !st.ok()) {
    spdlog::critical("quizflow serve: the engine could not start: {}", st.to_string());
    return 1;
  }
  if (source) {
    if (Status st = source->start(); !st.ok()) {
      spdlog::critical("quizflow serve: the Kafka consumer could not start: {}", st.to_string());
      engine.stop();
      return 1;
    }
  }
  // QUIZFLOW_INGRESS_MODE=kafka: answers are produced to quiz.answers and answered once Kafka
  // acknowledged them; Kafka gets the request deadline less a quarter of it (at least 500 ms
  // less), so an answer it did not acknowledge is storage_unavailable before outcome_unknown.
  std::unique_ptr<ingress::KafkaAnswers> kafka_answers;
  if (c.ingress_mode == "kafka") {
    kafka_answers = std::make_unique<ingress::KafkaAnswers>(
        bootstrap, c.topic_answers, static_cast<size_t>(c.http_max_batch),
        std::max(250, c.http_request_timeout_ms - std::max(500, c.http_request_timeout_ms / 4)));
    if (Status st = kafka_answers->start(); !st.ok()) {
      spdlog::critical("quizflow serve: the Kafka answers producer could not start: {}",
                       st.to_string());
      if (source) source->stop();
      engine.stop();
      return 1;
    }
  }
  ingress::HttpServer http(engine, kafka_answers.get());
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
  engine.begin_drain();    // and /health 503 "draining"
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
  if (kafka_answers) kafka_answers->stop();  // what Kafka acknowledges by now is answered
  if (source) source->stop();  // its answers in the engine are stored before it leaves
  engine.stop();
  drained_flag().store(true);
  watchdog.join();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the last responses leave
  http.shutdown();
  spdlog::info("quizflow stopped");
  return 0;
}

// Commands that only read need the schema as it is; those that write bring it up to date.
Status schema_ready(Store& store, bool writes) {
  if (writes) return store.migrate();
  auto pending = store.pending_migrations();
  if (!pending.ok()) return pending.status();
  if (*pending > 0)
    return Status::invalid("the database's schema is " + std::to_string(*pending) +
                           " migrations behind (an empty database?): run quizflow migrate");
  return Status();
}

int export_events(const Config& c, const std::vector<int64_t>& quizzes, const std::string& to) {
  auto store = make_store(c);
  if (Status s = schema_ready(*store, /*writes=*/false); !s.ok()) {
    spdlog::critical("quizflow export failed: {}", s.to_string());
    return 1;
  }
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
  for (int64_t q : r->without_definition)
    spdlog::warn(
        "export: quiz {} has no readable stored definition: its events were written without a "
        "quiz line (an import reports them as of an unknown quiz)",
        q);
  spdlog::info("export: {} events of {} quizzes in {:.1f} s ({:.0f} events/s)", r->events,
               r->quizzes, r->seconds, r->events / std::max(r->seconds, 1e-9));
  return 0;
}

std::string standing_text(const std::optional<Standing>& s) {
  if (!s) return "(none)";
  return "score " + std::to_string(s->score) + ", correct " + std::to_string(s->correct) +
         ", time_ms " + std::to_string(s->time_ms);
}

// Progress of a replay: a bar redrawn on a terminal, a log line every 5 s otherwise.
class ReplayMeter {
 public:
  ReplayMeter() : tty_(isatty(STDERR_FILENO) == 1) {}
  void operator()(int64_t events, double frac, double secs) {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_) return;
    next_ = now + (tty_ ? std::chrono::milliseconds(200) : std::chrono::milliseconds(5000));
    const double rate = events / std::max(secs, 1e-9);
    const double eta = frac > 0 ? secs * (1 - frac) / frac : 0;
    if (tty_) {
      constexpr int kWidth = 30;
      const int filled = static_cast<int>(frac * kWidth);
      std::fprintf(stderr, "\r[%s%s] %3.0f%%  %lld events  %.0f events/s  ETA %.0f s ",
                   std::string(static_cast<size_t>(filled), '#').c_str(),
                   std::string(static_cast<size_t>(kWidth - filled), '.').c_str(), frac * 100,
                   static_cast<long long>(events), rate, std::max(0.0, eta));
      drawn_ = true;
    } else {
      spdlog::info("replay: {} events ({:.0f}%), {:.0f} events/s, ETA {:.0f} s", events, frac * 100,
                   rate, std::max(0.0, eta));
    }
  }
  void done() {
    if (drawn_) std::fputc('\n', stderr);
  }

 private:
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point next_{};
};

// `from`: empty for the event log, else the path of an event file. `import`: exit 0 on success.
int replay(const Config& c, const std::vector<int64_t>& quizzes, bool dry_run,
           const std::string& from, bool import, size_t jobs) {
  auto store = make_store(c);
  if (Status s = schema_ready(*store, /*writes=*/!dry_run); !s.ok()) {
    spdlog::critical("quizflow {} failed: {}", import ? "import" : "replay", s.to_string());
    return 1;
  }
  ReplayMeter meter;
  Result<ReplaySummary> r = Status::internal("not run");
  if (from.empty()) {
    r = replay_log(*store, quizzes, ReplayOptions{dry_run, 20, jobs}, std::ref(meter));
  } else {
    std::error_code ec;
    std::ifstream file(from, std::ios::binary);
    if (!file || std::filesystem::is_directory(from, ec)) {
      spdlog::critical("quizflow {}: cannot read {}", import ? "import" : "replay", from);
      return 2;
    }
    // Pipes (/dev/stdin, <(zcat …)) have no size: the progress then shows events only.
    const auto size = std::filesystem::file_size(from, ec);
    const int64_t bytes = ec ? 0 : static_cast<int64_t>(size);
    ingress::EventFileRuns runs(file, bytes, quizzes);
    r = replay_runs(*store, runs, ReplayOptions{dry_run, 20}, std::ref(meter));
  }
  meter.done();
  if (!r.ok()) {
    spdlog::critical("quizflow {} failed: {}", import ? "import" : "replay",
                     r.status().to_string());
    return r.status().code() == StatusCode::invalid ? 2 : 1;
  }
  const ReplaySummary& s = *r;
  std::printf("replay%s: %lld events of %lld quizzes in %.1f s (%.0f events/s)\n",
              dry_run ? " (dry run)" : "", static_cast<long long>(s.events),
              static_cast<long long>(s.quizzes), s.seconds, s.events / std::max(s.seconds, 1e-9));
  if (s.rejected > 0)
    std::printf("events the quizzes' definitions now reject (not counted): %lld\n",
                static_cast<long long>(s.rejected));
  for (int64_t q : s.unknown_quizzes)
    std::printf("quiz %lld: events without a stored quiz definition (skipped)\n",
                static_cast<long long>(q));
  for (int64_t q : s.conflicting_quizzes)
    std::printf(
        "quiz %lld: the file's definition differs from the stored one (skipped, nothing "
        "overwritten)\n",
        static_cast<long long>(q));
  for (int64_t q : s.finalized_refusing)
    std::printf(
        "quiz %lld is finalized here: answers of the file it does not hold were not added\n",
        static_cast<long long>(q));
  if (!from.empty() && !dry_run)
    std::printf("imported: %lld events new to the log, %lld quizzes created\n",
                static_cast<long long>(s.appended), static_cast<long long>(s.quizzes_created));
  for (int64_t q : s.finalized_changed)
    std::printf(
        "quiz %lld is finalized: its standings differ from the log but were not "
        "rewritten; its rewards stay as granted\n",
        static_cast<long long>(q));
  std::printf(dry_run ? "standings that differ: %lld players in %lld quizzes%s\n"
                      : "standings rebuilt that changed: %lld players in %lld quizzes%s\n",
              static_cast<long long>(s.players_changed), static_cast<long long>(s.quizzes_changed),
              s.players_changed > 0 ? " (stored -> replayed):" : "");
  for (const ReplayDiff& d : s.first_diffs)
    std::printf("  quiz %lld player %lld: %s -> %s\n", static_cast<long long>(d.quiz_id),
                static_cast<long long>(d.diff.user_id), standing_text(d.diff.stored).c_str(),
                standing_text(d.diff.replayed).c_str());
  if (s.players_changed > static_cast<int64_t>(s.first_diffs.size()))
    std::printf(
        "  … and %lld more\n",
        static_cast<long long>(s.players_changed - static_cast<int64_t>(s.first_diffs.size())));
  if (!s.conflicting_quizzes.empty()) return 1;
  if (import) return s.unknown_quizzes.empty() && s.finalized_refusing.empty() ? 0 : 1;
  return s.players_changed > 0 ? 10 : 0;
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
  std::string config_path, port_file, to, from;
  std::vector<int64_t> quizzes;
  bool dry_run = false;
  size_t jobs = 0;  // --jobs; 0: not given (2 for a replay of the log)
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (args[i] == "--port-file" && i + 1 < args.size()) {
      port_file = args[++i];
    } else if (args[i] == "--dry-run" && (cmd == "replay" || cmd == "import")) {
      dry_run = true;
    } else if (args[i] == "--jobs" && i + 1 < args.size() && cmd == "replay") {
      const std::string& v = args[++i];
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 1 || n > 64) {
        std::fprintf(stderr, "quizflow: --jobs wants 1 … 64, not '%s'\n", v.c_str());
        return 2;
      }
      jobs = static_cast<size_t>(n);
    } else if (args[i] == "--from" && i + 1 < args.size() && cmd == "replay") {
      const std::string& v = args[++i];
      if (v.rfind("file:", 0) == 0 && v.size() > 5) {
        from = v.substr(5);
      } else if (v != "log") {
        std::fprintf(stderr, "quizflow: --from wants log or file:PATH, not '%s'\n", v.c_str());
        return 2;
      }
    } else if (cmd == "import" && from.empty() && !args[i].empty() && args[i][0] != '-') {
      from = args[i];
    } else if (args[i] == "--to" && i + 1 < args.size() && cmd == "export") {
      to = args[++i];
    } else if (args[i] == "--quiz" && i + 1 < args.size() &&
               (cmd == "export" || cmd == "replay" || cmd == "import")) {
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
  if (jobs > 0 && !from.empty()) {
    std::fprintf(stderr, "quizflow: --jobs applies to replays of the log, not of a file\n");
    return 2;
  }
  // A replay of the log rebuilds `jobs` quizzes at once (2 by default), one of a file one: a
  // connection each, and one reading.
  if (jobs == 0) jobs = from.empty() ? 2 : 1;
  const bool replaying = cmd == "replay" || cmd == "import";
  if (replaying && static_cast<int64_t>(jobs) + 1 > int64_t{c.db_pool_size} + c.db_max_overflow) {
    std::fprintf(stderr,
                 "quizflow: --jobs %zu needs a connection each and one more: more than "
                 "DB_POOL_SIZE + DB_MAX_OVERFLOW (%d)\n",
                 jobs, c.db_pool_size + c.db_max_overflow);
    return 2;
  }
  if (cmd == "import" && from.empty()) {
    std::fprintf(stderr, "quizflow: import wants the file to read: quizflow import PATH\n");
    return 2;
  }
  setup_logging(c, /*to_stderr=*/cmd == "export" || cmd == "replay" || cmd == "import");
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
    if (cmd == "replay") return replay(c, quizzes, dry_run, from, /*import=*/false, jobs);
    if (cmd == "import") return replay(c, quizzes, dry_run, from, /*import=*/true, 1);
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
