#include "egress/pg_copy.h"

#include <endian.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cstring>
#include <pqxx/except>
#include <stdexcept>

#include "egress/batch_writer.h"
#include "egress/pg_conn.h"

namespace quizflow::egress {

// ---- PgConnection ----

PgConnection::PgConnection(const std::string& options)
    : pqxx::connection_base(policy_), policy_(options) {
  init();
}

PgConnection::~PgConnection() noexcept { close(); }

PgConnection::Policy::handle PgConnection::Policy::do_startconnect(handle orig) {
  ++connects_;
  h_ = pqxx::connect_direct::do_startconnect(orig);
  return h_;
}

PgConnection::Policy::handle PgConnection::Policy::do_dropconnect(handle orig) noexcept {
  h_ = pqxx::connect_direct::do_dropconnect(orig);
  return h_;
}

PgConnection::Policy::handle PgConnection::Policy::do_disconnect(handle orig) noexcept {
  h_ = pqxx::connect_direct::do_disconnect(orig);
  return h_;
}

namespace {
// The binary COPY format's 11-byte signature; timestamps count from 2000-01-01T00:00:00Z.
constexpr std::string_view kCopySignature("PGCOPY\n\377\r\n\0", 11);
constexpr int64_t kPgEpochMs = 946684800000LL;
}  // namespace

// ---- BinaryFields, BinaryCopy ----

void BinaryCopy::start(size_t rows_hint) {
  buf_.clear();
  buf_.reserve(rows_hint * 96 + 32);
  buf_.append(kCopySignature);
  i32(0);  // flags
  i32(0);  // header extension length
  rows_ = 0;
}

void BinaryFields::text(std::string_view s) {
  i32(static_cast<int32_t>(s.size()));
  buf_.append(s);
}

void BinaryFields::int8(int64_t v) {
  i32(8);
  const uint64_t be = htobe64(static_cast<uint64_t>(v));
  buf_.append(reinterpret_cast<const char*>(&be), 8);
}

void BinaryFields::int4(int32_t v) {
  i32(4);
  i32(v);
}

void BinaryFields::boolean(bool b) {
  i32(1);
  buf_.push_back(b ? 1 : 0);
}

void BinaryFields::timestamptz_ms(int64_t unix_ms) { int8((unix_ms - kPgEpochMs) * 1000); }

const std::string& BinaryCopy::finish() {
  i16(-1);
  return buf_;
}

void BinaryFields::i16(int16_t v) {
  const uint16_t be = htobe16(static_cast<uint16_t>(v));
  buf_.append(reinterpret_cast<const char*>(&be), 2);
}

void BinaryFields::i32(int32_t v) {
  const uint32_t be = htobe32(static_cast<uint32_t>(v));
  buf_.append(reinterpret_cast<const char*>(&be), 4);
}

// ---- BinaryArray ----

BinaryArray::BinaryArray(uint32_t element_oid, size_t elements) {
  buf_.reserve(20 + elements * 16);
  i32(1);  // dimensions
  i32(0);  // flags: no NULLs
  i32(static_cast<int32_t>(element_oid));
  i32(static_cast<int32_t>(elements));
  i32(1);  // lower bound
}

namespace {
// Reads what is left of a command's results: the first error's message and SQLSTATE (empty when
// it succeeded). The connection is idle afterwards.
std::pair<std::string, std::string> finish_command(pg_conn* conn) {
  std::string err, state;
  while (PGresult* res = PQgetResult(conn)) {
    if (PQresultStatus(res) != PGRES_COMMAND_OK && err.empty()) {
      err = PQresultErrorMessage(res);
      if (const char* st = PQresultErrorField(res, PG_DIAG_SQLSTATE)) state = st;
    }
    PQclear(res);
  }
  return {err, state};
}
}  // namespace

// ---- COPY FROM STDIN ----

void copy_in(pg_conn* conn, const char* copy_sql, const std::string& data) {
  if (!conn) throw pqxx::broken_connection("COPY: not connected");
  PGresult* r = PQexec(conn, copy_sql);
  const bool started = PQresultStatus(r) == PGRES_COPY_IN;
  std::string why = started ? "" : PQresultErrorMessage(r);
  PQclear(r);
  if (!started) {
    finish_command(conn);  // what is left of its results: the connection is usable again
    throw_pq_error(conn, "COPY failed to start: " + one_line(why), "", copy_sql);
  }
  constexpr size_t kChunk = 1 << 18;
  bool sent = true;
  for (size_t off = 0; off < data.size() && sent; off += kChunk) {
    const size_t len = std::min(kChunk, data.size() - off);
    sent = PQputCopyData(conn, data.data() + off, static_cast<int>(len)) == 1;
  }
  if (!sent) why = PQerrorMessage(conn);
  // End the COPY in every case (with an error when the data could not be sent), then read the
  // outcome: the server's error, if any, arrives here.
  PQputCopyEnd(conn, sent ? nullptr : "client could not send the COPY data");
  auto [err, state] = finish_command(conn);
  if (!sent && err.empty()) err = why;
  if (err.empty()) return;
  throw_pq_error(conn, "COPY failed: " + one_line(err), state, copy_sql);
}

// ---- COPY TO STDOUT ----

namespace {

uint32_t be32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return be32toh(v);
}

}  // namespace

BinaryCopyReader::Row* BinaryCopyReader::next() {
  if (finished_) return nullptr;
  const size_t avail = buf_.size() - at_;
  const char* p = buf_.data() + at_;
  if (!header_) {
    if (avail < kCopySignature.size() + 8) return nullptr;
    if (std::string_view(p, kCopySignature.size()) != kCopySignature)
      throw std::runtime_error("COPY output is not in binary format");
    const size_t ext = be32(p + kCopySignature.size() + 4);
    if (avail < kCopySignature.size() + 8 + ext) return nullptr;
    at_ += kCopySignature.size() + 8 + ext;
    header_ = true;
    return next();
  }
  if (avail < 2) return nullptr;
  uint16_t n16;
  std::memcpy(&n16, p, 2);
  const auto fields = static_cast<int16_t>(be16toh(n16));
  if (fields == -1) {
    finished_ = true;
    at_ += 2;
    return nullptr;
  }
  if (fields < 0) throw std::runtime_error("COPY output: bad field count");
  // First check the whole row is here, then slice it.
  size_t off = 2;
  for (int i = 0; i < fields; ++i) {
    if (avail < off + 4) return nullptr;
    const auto len = static_cast<int32_t>(be32(p + off));
    off += 4 + (len > 0 ? static_cast<size_t>(len) : 0);
  }
  if (avail < off) return nullptr;
  row_.clear();
  off = 2;
  for (int i = 0; i < fields; ++i) {
    const auto len = static_cast<int32_t>(be32(p + off));
    off += 4;
    if (len < 0) {
      row_.push_back(Field{{}, true});
    } else {
      row_.push_back(Field{std::string_view(p + off, static_cast<size_t>(len)), false});
      off += static_cast<size_t>(len);
    }
  }
  at_ += off;
  return &row_;
}

int64_t BinaryCopyReader::int8(const Field& f) {
  if (f.value.size() != 8) throw std::runtime_error("COPY output: not an int8 field");
  uint64_t v;
  std::memcpy(&v, f.value.data(), 8);
  return static_cast<int64_t>(be64toh(v));
}

int32_t BinaryCopyReader::int4(const Field& f) {
  if (f.value.size() != 4) throw std::runtime_error("COPY output: not an int4 field");
  return static_cast<int32_t>(be32(f.value.data()));
}

int64_t BinaryCopyReader::timestamptz_ms(const Field& f) {
  const int64_t us = int8(f);
  // Floor division: instants before 2000 keep their millisecond.
  return kPgEpochMs + (us >= 0 ? us / 1000 : -((-us + 999) / 1000));
}

bool BinaryCopyReader::boolean(const Field& f) {
  if (f.value.size() != 1) throw std::runtime_error("COPY output: not a boolean field");
  return f.value[0] != 0;
}

int64_t copy_rows_out(pg_conn* conn, const char* copy_sql, size_t columns,
                      const std::function<void(const BinaryCopyReader::Row&)>& on_row) {
  BinaryCopyReader reader;
  int64_t n = 0;
  copy_out(conn, copy_sql, [&](std::string_view chunk) {
    reader.feed(chunk, [&](const BinaryCopyReader::Row& r) {
      if (r.size() != columns)
        throw std::runtime_error("COPY output: a row of " + std::to_string(r.size()) +
                                 " fields, expected " + std::to_string(columns));
      on_row(r);
      ++n;
    });
  });
  if (!reader.finished()) throw std::runtime_error("COPY output ended before its trailer");
  return n;
}

void copy_out(pg_conn* conn, const char* copy_sql,
              const std::function<void(std::string_view)>& on_data) {
  if (!conn) throw pqxx::broken_connection("COPY: not connected");
  PGresult* r = PQexec(conn, copy_sql);
  const bool started = PQresultStatus(r) == PGRES_COPY_OUT;
  const std::string why = started ? "" : PQresultErrorMessage(r);
  const char* st = started ? nullptr : PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const std::string start_state = st ? st : "";
  PQclear(r);
  if (!started) {
    finish_command(conn);
    throw_pq_error(conn, "COPY failed to start: " + one_line(why), start_state, copy_sql);
  }
  for (;;) {
    char* data = nullptr;
    const int n = PQgetCopyData(conn, &data, 0);
    if (n > 0) {
      const std::string_view chunk(data, static_cast<size_t>(n));
      try {
        on_data(chunk);
      } catch (...) {
        PQfreemem(data);
        throw;
      }
      PQfreemem(data);
      continue;
    }
    if (n == -2)
      throw_pq_error(conn, "COPY failed: " + one_line(PQerrorMessage(conn)), "", copy_sql);
    break;  // -1: done
  }
  const auto [err, state] = finish_command(conn);
  if (!err.empty()) throw_pq_error(conn, "COPY failed: " + one_line(err), state, copy_sql);
}

void throw_pq_error(pg_conn* conn, const std::string& what, const std::string& sqlstate,
                    const char* query) {
  if (!conn || PQstatus(conn) == CONNECTION_BAD) throw pqxx::broken_connection(what);
  if (sqlstate == "23505") throw pqxx::unique_violation(what, query, sqlstate.c_str());
  throw pqxx::sql_error(what, query, sqlstate.empty() ? nullptr : sqlstate.c_str());
}

}  // namespace quizflow::egress
