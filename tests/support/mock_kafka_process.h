// A librdkafka mock cluster hosted by a child process (tools/mock_kafka.cpp, qf-mock-kafka), so
// that a test can kill -9 the engine under test and keep the broker and its messages.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

namespace quizflow::testing {

class MockKafkaProcess {
 public:
  // Spawns qf-mock-kafka with `brokers` brokers (and its default topics, `partitions` each) and
  // waits up to 10 s for its bootstrap address. The binary is $QF_MOCK_KAFKA_BIN, otherwise
  // "qf-mock-kafka" next to $QUIZFLOW_BIN (scripts/test sets it). Throws std::runtime_error when
  // neither names an executable, the spawn fails, or no address comes in time (the child is
  // killed then).
  explicit MockKafkaProcess(int brokers = 1, int partitions = 3);
  // Closes the child's stdin (it then shuts the cluster down), waits up to 3 s for it to exit,
  // then SIGKILLs it; always reaps it. Never throws.
  ~MockKafkaProcess();
  MockKafkaProcess(const MockKafkaProcess&) = delete;
  MockKafkaProcess& operator=(const MockKafkaProcess&) = delete;

  // "127.0.0.1:port[,...]", for bootstrap.servers.
  const std::string& bootstrap() const { return bootstrap_; }
  pid_t pid() const { return pid_; }

  // Sets every broker down / up and returns once the child confirmed it ("ok down" / "ok up");
  // throws std::runtime_error when it reports an error, exits, or is silent for 5 s.
  void brokers_down();
  void brokers_up();

  // Fault injection (same confirmation and errors as brokers_down()):
  // Closes every client connection (every broker down and at once up again); clients reconnect.
  void drop_connections();
  // The next `count` requests of Kafka API key `api_key` (kApiProduce, kApiFetch, …), from any
  // client, fail with `error` (an rd_kafka_resp_err_t value, e.g. 6 NOT_LEADER_FOR_PARTITION,
  // 7 REQUEST_TIMED_OUT; kErrTransport makes the broker drop the connection instead).
  void push_request_errors(int api_key, int count, int error);
  // Forgets the errors still pushed for `api_key`.
  void clear_request_errors(int api_key);
  // Every broker answers `ms` late (0: at once).
  void set_rtt(int ms);

  static constexpr int kApiProduce = 0, kApiFetch = 1, kApiOffsetCommit = 8, kApiHeartbeat = 12;
  static constexpr int kErrTransport = -195;  // RD_KAFKA_RESP_ERR__TRANSPORT

 private:
  void command(const std::string& cmd);
  // Next line from the child's stdout (without '\n'); throws after `timeout` or at EOF.
  std::string read_line(std::chrono::milliseconds timeout, const char* waiting_for);
  void stop() noexcept;

  pid_t pid_ = -1;
  int to_child_ = -1;     // the child's stdin (write end)
  int from_child_ = -1;   // the child's stdout (read end)
  std::string buffered_;  // bytes read past the last returned line
  std::string bootstrap_;
};

}  // namespace quizflow::testing
