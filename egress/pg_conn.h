// Internal to egress/: the pooled connection object (libpqxx stays out of public headers).
#pragma once

#include <memory>
#include <pqxx/connection>

#include "egress/pg_pool.h"

namespace quizflow::egress {

struct PgPool::Conn {
  std::unique_ptr<pqxx::connection> c;
  bool staged = false;  // the batch writer's temp staging tables exist on this connection
};

}  // namespace quizflow::egress
