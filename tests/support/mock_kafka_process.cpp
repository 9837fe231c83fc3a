#include "support/mock_kafka_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace quizflow::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::runtime_error sys_error(const std::string& what) {
  return std::runtime_error("MockKafkaProcess: " + what + ": " + std::strerror(errno));
}

// The qf-mock-kafka binary: $QF_MOCK_KAFKA_BIN, else next to $QUIZFLOW_BIN; throws when the
// chosen path is not executable or neither variable is set.
std::string mock_binary() {
  const char* explicit_bin = std::getenv("QF_MOCK_KAFKA_BIN");
  if (explicit_bin && *explicit_bin) {
    if (access(explicit_bin, X_OK) != 0)
      throw std::runtime_error(std::string("MockKafkaProcess: QF_MOCK_KAFKA_BIN=") + explicit_bin +
                               " is not an executable file");
    return explicit_bin;
  }
  const char* quizflow_bin = std::getenv("QUIZFLOW_BIN");
  if (quizflow_bin && *quizflow_bin) {
    const std::string bin =
        (std::filesystem::path(quizflow_bin).parent_path() / "qf-mock-kafka").string();
    if (access(bin.c_str(), X_OK) != 0)
      throw std::runtime_error("MockKafkaProcess: " + bin +
                               " (next to QUIZFLOW_BIN) is not an executable file; build the "
                               "qf-mock-kafka target or set QF_MOCK_KAFKA_BIN");
    return bin;
  }
  throw std::runtime_error(
      "MockKafkaProcess: neither QF_MOCK_KAFKA_BIN nor QUIZFLOW_BIN is set (run the tests through "
      "scripts/test, or set QF_MOCK_KAFKA_BIN to the qf-mock-kafka binary)");
}

// Moves `fd` to a descriptor >= 3 (close-on-exec), so that dup2 onto 0/1 in the child is never
// a no-op that would leave close-on-exec set.
int above_stdio(int fd) {
  if (fd > 2) return fd;
  const int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const int saved = errno;
  close(fd);
  errno = saved;
  return moved;
}

// Writes all of `data` to a pipe without letting a closed reader raise SIGPIPE in this process.
bool write_all_nosigpipe(int fd, const std::string& data) {
  sigset_t pipe_set, old_mask, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  bool ok = true;
  for (size_t done = 0; done < data.size();) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ok = false;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (!ok && errno == EPIPE && !was_pending) {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  return ok;
}

}  // namespace

MockKafkaProcess::MockKafkaProcess(int brokers, int partitions) {
  if (brokers < 1) throw std::invalid_argument("MockKafkaProcess: brokers must be >= 1");
  const std::string bin = mock_binary();

  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) throw sys_error("pipe2");
  if (pipe2(out, O_CLOEXEC) != 0) {
    const auto e = sys_error("pipe2");
    close(in[0]);
    close(in[1]);
    throw e;
  }
  in[0] = above_stdio(in[0]);
  out[1] = above_stdio(out[1]);
  to_child_ = in[1];
  from_child_ = out[0];

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  int rc = in[0] < 0 || out[1] < 0 ? EBADF : 0;
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  const std::string brokers_arg = std::to_string(brokers),
                    partitions_arg = std::to_string(partitions);
  std::vector<char*> argv = {const_cast<char*>(bin.c_str()),
                             const_cast<char*>("--brokers"),
                             const_cast<char*>(brokers_arg.c_str()),
                             const_cast<char*>("--partitions"),
                             const_cast<char*>(partitions_arg.c_str()),
                             nullptr};
  if (rc == 0) rc = posix_spawn(&pid_, bin.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (in[0] >= 0) close(in[0]);
  if (out[1] >= 0) close(out[1]);
  if (rc != 0) {
    pid_ = -1;
    stop();
    throw std::runtime_error("MockKafkaProcess: spawning " + bin + ": " + std::strerror(rc));
  }

  try {
    const std::string line = read_line(std::chrono::seconds(10), "its bootstrap= line");
    constexpr std::string_view kPrefix = "bootstrap=";
    if (line.rfind(kPrefix, 0) != 0 || line.size() == kPrefix.size())
      throw std::runtime_error("MockKafkaProcess: expected \"bootstrap=<address>\", got \"" + line +
                               "\"");
    bootstrap_ = line.substr(kPrefix.size());
  } catch (...) {
    stop();
    throw;
  }
}

MockKafkaProcess::~MockKafkaProcess() { stop(); }

void MockKafkaProcess::brokers_down() { command("down"); }
void MockKafkaProcess::brokers_up() { command("up"); }
void MockKafkaProcess::drop_connections() { command("drop"); }
void MockKafkaProcess::push_request_errors(int api_key, int count, int error) {
  command("errors " + std::to_string(api_key) + " " + std::to_string(count) + " " +
          std::to_string(error));
}
void MockKafkaProcess::clear_request_errors(int api_key) {
  command("clear " + std::to_string(api_key));
}
void MockKafkaProcess::set_rtt(int ms) { command("rtt " + std::to_string(ms)); }

void MockKafkaProcess::command(const std::string& cmd) {
  if (to_child_ < 0 || !write_all_nosigpipe(to_child_, cmd + "\n"))
    throw sys_error("sending \"" + cmd + "\" to qf-mock-kafka");
  const std::string reply =
      read_line(std::chrono::seconds(5), ("the reply to \"" + cmd + "\"").c_str());
  if (reply != "ok " + cmd)
    throw std::runtime_error("MockKafkaProcess: \"" + cmd + "\" answered \"" + reply + "\"");
}

std::string MockKafkaProcess::read_line(std::chrono::milliseconds timeout,
                                        const char* waiting_for) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto nl = buffered_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      return line;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0)
      throw std::runtime_error("MockKafkaProcess: qf-mock-kafka sent no " +
                               std::string(waiting_for) + " within " +
                               std::to_string(timeout.count()) + " ms");
    pollfd pfd{from_child_, POLLIN, 0};
    const int ready = poll(&pfd, 1, static_cast<int>(left));
    if (ready < 0 && errno != EINTR) throw sys_error("poll");
    if (ready <= 0) continue;
    char buf[1024];
    const ssize_t n = read(from_child_, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) throw sys_error("reading from qf-mock-kafka");
    if (n == 0)
      throw std::runtime_error("MockKafkaProcess: qf-mock-kafka exited while waiting for " +
                               std::string(waiting_for) + " (see its stderr above)");
    buffered_.append(buf, static_cast<size_t>(n));
  }
}

void MockKafkaProcess::stop() noexcept {
  if (to_child_ >= 0) {
    close(to_child_);  // EOF: the child destroys its cluster and exits
    to_child_ = -1;
  }
  if (pid_ > 0) {
    const auto deadline = Clock::now() + std::chrono::seconds(3);
    bool reaped = false;
    while (!reaped && Clock::now() < deadline) {
      const pid_t r = waitpid(pid_, nullptr, WNOHANG);
      if (r == pid_ || (r < 0 && errno != EINTR)) {
        reaped = true;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    if (!reaped) {
      kill(pid_, SIGKILL);
      while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    pid_ = -1;
  }
  if (from_child_ >= 0) {
    close(from_child_);
    from_child_ = -1;
  }
}

}  // namespace quizflow::testing
