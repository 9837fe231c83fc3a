// PostgreSQL's binary formats: COPY input rows and array parameters (for statements that take a
// whole batch as arrays, e.g. INSERT … SELECT FROM unnest($1, $2, …)), and the COPY FROM STDIN
// exchange over a libpq handle. Binary COPY skips the text parsing of every field on the server
// (~22% faster than libpqxx's text stream_to, see shared pitfalls).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

extern "C" {
struct pg_conn;
}

namespace quizflow::egress {

// One field (or array element) each: a 4-byte length, then the value, big-endian as the binary
// formats want.
class BinaryFields {
 public:
  void text(std::string_view s);
  void int8(int64_t v);
  void int4(int32_t v);
  void boolean(bool b);
  void timestamptz_ms(int64_t unix_ms);  // stored as microseconds since 2000-01-01 UTC

 protected:
  void i16(int16_t v);
  void i32(int32_t v);
  std::string buf_;
};

// Builds one COPY … FROM STDIN (FORMAT binary) input: start(), then per row row(n) and n fields,
// then finish().
class BinaryCopy : public BinaryFields {
 public:
  void start(size_t rows_hint);
  void row(int16_t fields) {
    ++rows_;
    i16(fields);
  }
  const std::string& finish();                      // the whole input, trailer included
  const std::string& data() const { return buf_; }  // after finish()
  size_t rows() const { return rows_; }

 private:
  size_t rows_ = 0;
};

// A one-dimensional array parameter without NULLs in binary format: constructed with the
// element type's OID and the element count, then exactly that many elements.
class BinaryArray : public BinaryFields {
 public:
  static constexpr uint32_t kBool = 16, kInt8 = 20, kInt4 = 23, kText = 25, kTimestamptz = 1184;
  BinaryArray(uint32_t element_oid, size_t elements);
  const std::string& data() const { return buf_; }
};

// Reads a COPY … TO STDOUT (FORMAT binary) stream chunk by chunk: every complete row is handed
// to the callback as its fields (a NULL field as an empty view with null set). Throws
// std::runtime_error on a stream that is not binary COPY output.
class BinaryCopyReader {
 public:
  struct Field {
    std::string_view value;
    bool null = false;
  };
  using Row = std::vector<Field>;
  template <typename OnRow>
  void feed(std::string_view chunk, OnRow&& on_row) {
    buf_.append(chunk);
    while (Row* r = next()) on_row(*r);
    buf_.erase(0, at_);
    at_ = 0;
  }
  bool finished() const { return finished_; }  // the trailer was read

  // Field decoders (big-endian binary formats).
  static int64_t int8(const Field& f);
  static int32_t int4(const Field& f);
  static int64_t timestamptz_ms(const Field& f);  // from microseconds since 2000-01-01 UTC
  static bool boolean(const Field& f);

 private:
  Row* next();  // the next complete row in buf_ from at_, or nullptr
  std::string buf_;
  size_t at_ = 0;
  bool header_ = false, finished_ = false;
  Row row_;
};

// Runs `copy_sql` (a COPY … TO STDOUT) and hands its output to `on_data` chunk by chunk. Throws
// like copy_in; an exception from `on_data` ends the exchange (the connection is then unusable:
// discard it).
void copy_out(pg_conn* conn, const char* copy_sql,
              const std::function<void(std::string_view)>& on_data);

// Runs `copy_sql` (a COPY (SELECT …) TO STDOUT (FORMAT binary) of `columns` columns) and hands
// every row to `on_row`. Throws like copy_out, and std::runtime_error when a row has another
// number of fields or the output ends before its trailer. Returns the number of rows.
int64_t copy_rows_out(pg_conn* conn, const char* copy_sql, size_t columns,
                      const std::function<void(const BinaryCopyReader::Row&)>& on_row);

// Throws what libpqxx would for a failed libpq call on `conn`: pqxx::broken_connection when the
// connection is lost, pqxx::unique_violation for SQLSTATE 23505, pqxx::sql_error otherwise.
[[noreturn]] void throw_pq_error(pg_conn* conn, const std::string& what,
                                 const std::string& sqlstate, const char* query);

// Runs `copy_sql` (a COPY … FROM STDIN (FORMAT binary)) and sends `data` as its input. Throws
// like libpqxx: pqxx::broken_connection when the connection is lost, pqxx::unique_violation on
// a duplicate key, pqxx::sql_error otherwise, with the server's message on one line. The
// connection is idle again afterwards (inside its failed transaction, if any).
void copy_in(pg_conn* conn, const char* copy_sql, const std::string& data);

}  // namespace quizflow::egress
