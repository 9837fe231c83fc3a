// qf-mock-kafka: hosts a librdkafka mock cluster in a process of its own, so that a test can
// kill -9 the engine and keep the broker and the messages it holds.
//
// Protocol (stdout is line-buffered by hand: every line is flushed as soon as it is written):
//   1. once the cluster and its topics exist, prints exactly one line "bootstrap=<address>";
//   2. then reads commands from stdin, one per line, and answers each:
//        down   every broker (ids 1..N) is set down  -> "ok down"
//        up     every broker is set up again          -> "ok up"
//        drop   every broker down and at once up again: every client connection is closed,
//               clients reconnect                     -> "ok drop"
//        errors API COUNT ERR
//               the next COUNT requests of Kafka API key API (0 Produce, 1 Fetch,
//               8 OffsetCommit, 12 Heartbeat …) fail with error code ERR (an
//               rd_kafka_resp_err_t value; -195, RD_KAFKA_RESP_ERR__TRANSPORT, makes the
//               broker drop the connection instead)  -> "ok errors API COUNT ERR"
//        clear API
//               forgets the errors still pushed for API key API -> "ok clear API"
//        rtt MS every broker answers MS ms late (0: no delay) -> "ok rtt MS"
//        quit   exits                                 -> "ok quit"
//      a command that fails or is unknown is answered "error <command>: <reason>".
// EOF on stdin, SIGTERM or SIGINT destroy the cluster, then its host handle, and exit 0.
// Exit status: 0 on a clean end, 1 when the cluster cannot be set up, 2 on bad usage.
#include <librdkafka/rdkafka.h>
// rdkafka_mock.h must follow rdkafka.h.
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr const char* kUsage =
    "usage: qf-mock-kafka [--brokers N (default 1)] [--partitions P (default 3)] "
    "[--topic NAME]...\n"
    "  topics default to: quiz.answers quiz.notifications quiz.answers.dlq\n"
    "  prints \"bootstrap=<address>\", then reads commands from stdin: down, up, drop,\n"
    "  errors API COUNT ERR, clear API, rtt MS, quit\n";

struct Options {
  int brokers = 1;
  int partitions = 3;
  std::vector<std::string> topics;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "qf-mock-kafka: %s\n%s", message.c_str(), kUsage);
  std::exit(2);
}

// Parses a positive int no greater than `max`; exits with status 2 otherwise.
int parse_count(const char* flag, const char* text, int max) {
  int value = 0;
  const std::string_view s(text);
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || value < 1 || value > max)
    usage_error(std::string(flag) + " needs an integer from 1 to " + std::to_string(max) +
                ", got \"" + text + "\"");
  return value;
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg != "--brokers" && arg != "--partitions" && arg != "--topic")
      usage_error("unknown argument \"" + std::string(arg) + "\"");
    if (i + 1 >= argc) usage_error(std::string(arg) + " needs a value");
    const char* value = argv[++i];
    if (arg == "--brokers") {
      o.brokers = parse_count("--brokers", value, 64);
    } else if (arg == "--partitions") {
      o.partitions = parse_count("--partitions", value, 10000);
    } else {
      if (!*value) usage_error("--topic needs a non-empty name");
      o.topics.emplace_back(value);
    }
  }
  if (o.topics.empty()) o.topics = {"quiz.answers", "quiz.notifications", "quiz.answers.dlq"};
  return o;
}

// Writes one line to stdout and flushes it; false when stdout is gone (the reader exited).
bool say(const std::string& line) {
  return std::fprintf(stdout, "%s\n", line.c_str()) >= 0 && std::fflush(stdout) == 0;
}

// Sets every broker (ids 1..brokers) down or up; returns "" or the first failure.
std::string set_brokers(rd_kafka_mock_cluster_t* mcluster, int brokers, bool up) {
  for (int id = 1; id <= brokers; ++id) {
    const rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(mcluster, id)
                                       : rd_kafka_mock_broker_set_down(mcluster, id);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
      return "broker " + std::to_string(id) + ": " + rd_kafka_err2str(err);
  }
  return "";
}

// Splits `line` at blanks.
std::vector<std::string> words(std::string_view line) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.emplace_back(line.substr(start, i - start));
  }
  return out;
}

// Parses an integer from `lo` to `hi` into `out`; false when `text` is not one.
bool parse_int(const std::string& text, long lo, long hi, long& out) {
  long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < lo || value > hi)
    return false;
  out = value;
  return true;
}

// The fault commands (errors, clear, rtt); returns "" or what failed.
std::string fault_command(rd_kafka_mock_cluster_t* mcluster, const std::vector<std::string>& w) {
  long api = 0, count = 0, code = 0, ms = 0;
  if (w[0] == "errors") {
    if (w.size() != 4 || !parse_int(w[1], 0, 1000, api) || !parse_int(w[2], 1, 100000, count) ||
        !parse_int(w[3], -1000, 1000, code))
      return "usage: errors API(0-1000) COUNT(1-100000) ERR";
    const std::vector<rd_kafka_resp_err_t> errs(static_cast<size_t>(count),
                                                static_cast<rd_kafka_resp_err_t>(code));
    rd_kafka_mock_push_request_errors_array(mcluster, static_cast<int16_t>(api), errs.size(),
                                            errs.data());
    return "";
  }
  if (w[0] == "clear") {
    if (w.size() != 2 || !parse_int(w[1], 0, 1000, api)) return "usage: clear API(0-1000)";
    rd_kafka_mock_clear_request_errors(mcluster, static_cast<int16_t>(api));
    return "";
  }
  if (w.size() != 2 || !parse_int(w[1], 0, 600000, ms)) return "usage: rtt MS(0-600000)";
  const rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_rtt(mcluster, -1, static_cast<int>(ms));
  return err == RD_KAFKA_RESP_ERR_NO_ERROR ? "" : rd_kafka_err2str(err);
}

// Runs one command line; false when the process should end ("quit" or stdout gone).
bool run_command(rd_kafka_mock_cluster_t* mcluster, int brokers, std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
    line.remove_suffix(1);
  while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
  if (line.empty()) return true;
  const std::vector<std::string> w = words(line);
  std::string cmd;
  for (const std::string& word : w) {
    if (!cmd.empty()) cmd += ' ';
    cmd += word;
  }
  if (cmd == "quit") {
    say("ok quit");
    return false;
  }
  std::string failure;
  if (cmd == "down" || cmd == "up") {
    failure = set_brokers(mcluster, brokers, cmd == "up");
  } else if (cmd == "drop") {
    failure = set_brokers(mcluster, brokers, false);
    if (failure.empty()) failure = set_brokers(mcluster, brokers, true);
  } else if (w[0] == "errors" || w[0] == "clear" || w[0] == "rtt") {
    failure = fault_command(mcluster, w);
  } else {
    failure = "unknown command (expected down, up, drop, errors, clear, rtt or quit)";
  }
  return say(failure.empty() ? "ok " + cmd : "error " + cmd + ": " + failure);
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse_args(argc, argv);

  // SIGTERM/SIGINT are blocked before librdkafka starts its threads (they inherit the mask) and
  // read through a signalfd by the loop below, so the cluster is always torn down in order.
  // SIGPIPE is ignored: a vanished reader shows up as a failed write.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  if (sigprocmask(SIG_BLOCK, &stop_signals, nullptr) != 0) {
    std::perror("qf-mock-kafka: sigprocmask");
    return 1;
  }
  std::signal(SIGPIPE, SIG_IGN);
  const int sigfd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
  if (sigfd < 0) {
    std::perror("qf-mock-kafka: signalfd");
    return 1;
  }

  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) != RD_KAFKA_CONF_OK) {
    std::fprintf(stderr, "qf-mock-kafka: %s\n", err);
    rd_kafka_conf_destroy(conf);
    return 1;
  }
  rd_kafka_t* host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!host) {
    std::fprintf(stderr, "qf-mock-kafka: rd_kafka_new: %s\n", err);
    rd_kafka_conf_destroy(conf);
    return 1;
  }
  rd_kafka_mock_cluster_t* mcluster = rd_kafka_mock_cluster_new(host, opt.brokers);
  if (!mcluster) {
    std::fprintf(stderr, "qf-mock-kafka: rd_kafka_mock_cluster_new failed\n");
    rd_kafka_destroy(host);
    return 1;
  }
  int status = 0;
  for (const std::string& topic : opt.topics) {
    const rd_kafka_resp_err_t e =
        rd_kafka_mock_topic_create(mcluster, topic.c_str(), opt.partitions, 1);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "qf-mock-kafka: creating topic %s: %s\n", topic.c_str(),
                   rd_kafka_err2str(e));
      status = 1;
    }
  }

  if (status == 0 && say(std::string("bootstrap=") + rd_kafka_mock_cluster_bootstraps(mcluster))) {
    std::string pending;  // stdin bytes after the last complete line
    bool running = true;
    while (running) {
      pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {sigfd, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        std::perror("qf-mock-kafka: poll");
        break;
      }
      if (fds[1].revents & POLLIN) break;  // SIGTERM or SIGINT
      if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      const ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        // EOF (or a broken stdin): a final line without its newline still counts.
        if (!pending.empty()) run_command(mcluster, opt.brokers, pending);
        break;
      }
      pending.append(buf, static_cast<size_t>(n));
      size_t start = 0;
      for (size_t nl; running && (nl = pending.find('\n', start)) != std::string::npos;
           start = nl + 1)
        running =
            run_command(mcluster, opt.brokers, std::string_view(pending).substr(start, nl - start));
      pending.erase(0, start);
    }
  } else if (status == 0) {
    status = 1;  // stdout is gone before the address could be told
  }

  rd_kafka_mock_cluster_destroy(mcluster);
  rd_kafka_destroy(host);
  close(sigfd);
  return status;
}
