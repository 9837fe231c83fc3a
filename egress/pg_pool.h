// PostgreSQL connection pool with overflow semantics (spec §6 database_pool): `pool_size`
// connections are kept; under load up to `max_overflow` more are opened and closed again when
// returned. A checkout waits up to `checkout_timeout_ms`, then fails with PoolTimeout (counted).
// Broken connections are discarded and replaced by new ones on demand.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>

#include "core/config.h"
#include "core/metrics.h"
#include "core/mutex.h"
#include "core/store.h"

namespace quizflow::egress {

struct PoolOptions {
  std::string url;  // never logged unmasked
  int pool_size = 30;
  int max_overflow = 50;
  int checkout_timeout_ms = 5000;
  int statement_timeout_ms = 30000;
};

// The pool settings of the configuration (DATABASE_URL, DB_POOL_SIZE, DB_MAX_OVERFLOW, …).
PoolOptions pool_options(const Config& c);

// `url` (a postgresql:// URL or a key=value string) with libpq's network timeouts added, unless
// it sets them: connect_timeout=5, TCP keepalives (10 s idle, 5 s interval, 3 probes),
// tcp_user_timeout=30000 (ms).
std::string with_network_timeouts(const std::string& url);

// Thrown by checkout() when no connection could be had in time.
struct PoolTimeout : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class PgPool {
 public:
  // A pooled connection: one libpqxx connection plus per-connection state of its users.
  struct Conn;

  // Returns its connection to the pool on destruction (or closes it when discarded/overflow).
  class Lease {
   public:
    Lease(PgPool* pool, std::unique_ptr<Conn> conn);
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();
    Conn& conn() { return *conn_; }
    // The connection is broken or in an unknown state: close it instead of returning it.
    void discard() { discard_ = true; }

   private:
    PgPool* pool_;
    std::unique_ptr<Conn> conn_;
    bool discard_ = false;
  };

  explicit PgPool(PoolOptions options);
  ~PgPool();
  PgPool(const PgPool&) = delete;
  PgPool& operator=(const PgPool&) = delete;

  // Thread-safe. Throws PoolTimeout, or the connection error when a new connection fails.
  Lease checkout() QF_EXCLUDES(mu_);
  PoolStats stats() const QF_EXCLUDES(mu_);
  const PoolOptions& options() const { return options_; }

 private:
  void give_back(std::unique_ptr<Conn> conn, bool discard) QF_EXCLUDES(mu_);
  std::unique_ptr<Conn> open();

  const PoolOptions options_;
  mutable Mutex mu_;
  CondVar cv_;
  std::deque<std::unique_ptr<Conn>> idle_ QF_GUARDED_BY(mu_);
  int total_ QF_GUARDED_BY(mu_) = 0;  // open connections, idle or out
  int checked_out_ QF_GUARDED_BY(mu_) = 0;
  int64_t wait_count_ QF_GUARDED_BY(mu_) = 0;  // checkouts that had to wait
  int64_t timeouts_ QF_GUARDED_BY(mu_) = 0;
  int64_t opened_ QF_GUARDED_BY(mu_) = 0;
  int64_t closed_ QF_GUARDED_BY(mu_) = 0;
  int64_t discarded_ QF_GUARDED_BY(mu_) = 0;
  LatencyWindow wait_;  // checkout wait times (lock-free)
};

}  // namespace quizflow::egress
