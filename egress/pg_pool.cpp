#include "egress/pg_pool.h"

#include <spdlog/spdlog.h>

#include <pqxx/pqxx>

#include "core/log_rate.h"
#include "egress/pg_conn.h"

namespace quizflow::egress {

PoolOptions pool_options(const Config& c) {
  return PoolOptions{c.database_url, c.db_pool_size, c.db_max_overflow, c.db_checkout_timeout_ms,
                     c.db_statement_timeout_ms};
}

PgPool::Lease::Lease(PgPool* pool, std::unique_ptr<Conn> conn)
    : pool_(pool), conn_(std::move(conn)) {}

PgPool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_), conn_(std::move(other.conn_)), discard_(other.discard_) {}

PgPool::Lease::~Lease() {
  if (pool_ && conn_) pool_->give_back(std::move(conn_), discard_);
}

std::string with_network_timeouts(const std::string& url) {
  // A dead or silent server must not hold a database thread for minutes: bounded connects,
  // TCP keepalives on idle waits, and a bound on unacknowledged sends.
  static const std::pair<const char*, const char*> kDefaults[] = {
      {"connect_timeout", "5"},     {"keepalives", "1"},       {"keepalives_idle", "10"},
      {"keepalives_interval", "5"}, {"keepalives_count", "3"}, {"tcp_user_timeout", "30000"}};
  const bool is_url = url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0;
  std::string out = url;
  for (const auto& [key, value] : kDefaults) {
    if (url.find(std::string(key) + "=") != std::string::npos) continue;  // the user's wins
    // Appended piece by piece: GCC 12 at -O3 reports a false -Wrestrict for "literal" + string.
    if (is_url)
      out += out.find('?') == std::string::npos ? '?' : '&';
    else if (!out.empty())
      out += ' ';
    out += key;
    out += '=';
    out += value;
  }
  return out;
}

PgPool::PgPool(PoolOptions options) : options_(std::move(options)) {}

PgPool::~PgPool() {
  MutexLock lock(mu_);
  idle_.clear();
}

std::unique_ptr<PgPool::Conn> PgPool::open() {
  auto conn = std::make_unique<Conn>();
  conn->c = std::make_unique<PgConnection>(with_network_timeouts(options_.url));
  pqxx::nontransaction tx(*conn->c);
  // SQL text is never built from values: they go as parameters (or COPY rows).
  tx.exec_params("SELECT set_config('statement_timeout', $1, false)",
                 std::to_string(options_.statement_timeout_ms));
  tx.exec("SET synchronous_commit = on");
  conn->session = conn->c->connects();
  return conn;
}

PgPool::Lease PgPool::checkout() {
  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + std::chrono::milliseconds(options_.checkout_timeout_ms);
  const int limit = options_.pool_size + options_.max_overflow;
  bool waited = false;
  bool must_open = false;  // a new connection's slot is reserved; connect outside the lock
  std::unique_ptr<Conn> conn;
  {
    MutexLock lock(mu_);
    for (;;) {
      if (!idle_.empty()) {
        conn = std::move(idle_.back());  // most recently used first: keeps few connections warm
        idle_.pop_back();
        ++checked_out_;
        break;
      }
      if (total_ < limit) {
        ++total_;
        ++checked_out_;
        must_open = true;
        break;
      }
      if (!waited) {
        waited = true;
        ++wait_count_;
      }
      if (!cv_.wait_until(mu_, deadline) && idle_.empty() && total_ >= limit) {
        ++timeouts_;
        wait_.record_us(std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::steady_clock::now() - t0)
                            .count());
        static LogRate rate;
        if (int64_t more = 0; rate.allow(more))
          spdlog::warn(
              "db pool exhausted: no connection within {} ms ({} in use; timeouts so far {}; {} "
              "more lines held back)",
              options_.checkout_timeout_ms, limit, timeouts_, more);
        throw PoolTimeout("no database connection available within " +
                          std::to_string(options_.checkout_timeout_ms) + " ms");
      }
    }
  }
  if (must_open) {
    try {
      conn = open();  // a round trip or more
    } catch (...) {
      MutexLock lock(mu_);
      --total_;
      --checked_out_;
      cv_.notify_one();
      throw;
    }
    MutexLock lock(mu_);
    ++opened_;
    if (total_ > options_.pool_size)
      spdlog::debug("db pool: overflow connection opened ({} of {} + {})", total_,
                    options_.pool_size, options_.max_overflow);
  }
  if (waited)
    wait_.record_us(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count());
  else
    wait_.record_us(0);
  return Lease(this, std::move(conn));
}

void PgPool::give_back(std::unique_ptr<Conn> conn, bool discard) {
  std::unique_ptr<Conn> closing;
  {
    MutexLock lock(mu_);
    --checked_out_;
    // A connection libpqxx re-established while it was out lost its session settings.
    const bool broken = discard || !conn->c || !conn->c->is_open() || !conn->same_session();
    if (broken || static_cast<int>(idle_.size()) >= options_.pool_size) {
      --total_;
      ++closed_;
      if (broken) ++discarded_;
      closing = std::move(conn);
    } else {
      idle_.push_back(std::move(conn));
    }
  }
  cv_.notify_one();
  // `closing` closes its connection here, outside the lock.
}

PoolStats PgPool::stats() const {
  MutexLock lock(mu_);
  PoolStats s;
  s.pool_size = options_.pool_size;
  s.max_overflow = options_.max_overflow;
  s.checked_out = checked_out_;
  s.total = total_;
  s.overflow = std::max(0, total_ - options_.pool_size);
  s.idle = static_cast<int64_t>(idle_.size());
  s.wait_count = wait_count_;
  s.timeouts = timeouts_;
  s.opened = opened_;
  s.closed = closed_;
  s.discarded = discarded_;
  s.wait_ms_p99 = wait_.percentile_ms(99);
  return s;
}

}  // namespace quizflow::egress
