// Internal to egress/: the pooled connection object (libpqxx stays out of public headers).
#pragma once

#include <memory>
#include <pqxx/connection>

#include "egress/pg_pool.h"

namespace quizflow::egress {

// A libpqxx connection that also hands out its libpq handle, for what libpqxx 6.4 cannot do
// (binary COPY). Built on libpqxx's documented extension point, the connection policy: the
// policy sees every handle the connection opens or drops.
class PgConnection : public pqxx::connection_base {
 public:
  explicit PgConnection(const std::string& options);
  ~PgConnection() noexcept;
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // The live libpq handle (nullptr when not connected). Use only between libpqxx statements of
  // the current transaction, from the thread that owns the connection.
  pqxx::internal::pq::PGconn* raw() const { return policy_.current(); }

  // Counts the server connections opened. libpqxx 6.4 silently reconnects a broken connection
  // on the next transaction; when this changes, the session's state (temp tables, SET
  // variables) is gone.
  int connects() const { return policy_.connects(); }

 private:
  class Policy : public pqxx::connect_direct {
   public:
    using pqxx::connect_direct::connect_direct;
    handle do_startconnect(handle orig) override;
    handle do_dropconnect(handle orig) noexcept override;
    handle do_disconnect(handle orig) noexcept override;
    handle current() const { return h_; }
    int connects() const { return connects_; }

   private:
    handle h_ = nullptr;
    int connects_ = 0;
  };
  Policy policy_;  // constructed after the base, which only keeps a reference (as libpqxx does)
};

struct PgPool::Conn {
  std::unique_ptr<PgConnection> c;
  int session = 0;        // c->connects() when the pool set the session up
  bool prepared = false;  // the batch writer's statements are prepared in this session
  bool same_session() const { return c && c->connects() == session; }
};

}  // namespace quizflow::egress
