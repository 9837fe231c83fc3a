// The HTTP ingress (Pistache, spec §3): routes, limits, authentication, JSON bodies. Answers are
// handed to the engine and answered from an engine thread once committed; no Pistache thread
// waits for the database on the answer path.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace Pistache::Http {
class Endpoint;
}

namespace quizflow {
class Engine;
}

namespace quizflow::ingress {

class KafkaAnswers;

class HttpServer {
 public:
  // `kafka`: POST /v1/answers goes there instead of into the engine (QUIZFLOW_INGRESS_MODE).
  explicit HttpServer(Engine& engine, KafkaAnswers* kafka = nullptr);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds config().http_addr (port 0: a free port) and serves on background threads.
  // Throws std::runtime_error when it cannot bind.
  void start();
  uint16_t port() const;

  // New answers get 503 from now on (used while draining).
  void refuse_new_work();

  struct Shared;  // what the handler's per-thread clones share (http_server.cpp)

  // Closes the listener and the connections, then stops the storage-call threads (a call still
  // blocked on storage holds this until it returns). Call after the engine has drained.
  void shutdown();

 private:
  Engine& engine_;
  KafkaAnswers* kafka_;
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<Pistache::Http::Endpoint> endpoint_;
};

}  // namespace quizflow::ingress
