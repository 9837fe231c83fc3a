// The one error type of quizflow's interfaces (in the manner of leveldb's Status): an operation
// that can fail in an expected way (a server unreachable, a row in conflict, an outcome unknown)
// returns a Status, or a Result<T> that holds either a T or a Status that is not ok. Exceptions
// stay inside the unit that caught them; see docs/error-policy.md for what each code leads to.
#pragma once

#include <cassert>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace quizflow {

enum class StatusCode : uint8_t {
  ok,
  unavailable,  // a server is unreachable or refused; retrying later may succeed
  timeout,      // no answer in time (a pool checkout, a statement); retrying later may succeed
  in_doubt,     // the outcome is unknown (a connection lost at COMMIT and not resolvable yet)
  internal,     // a bug or an exhausted resource (an exception nobody expected)
  stale,        // a quiz's state in memory is older than the stored one (a replay rebuilt it)
  invalid,      // the input is wrong (a line of a file, a definition in conflict); retrying fails
};

const char* to_string(StatusCode c);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  static Status unavailable(std::string msg) {
    return Status(StatusCode::unavailable, std::move(msg));
  }
  static Status timeout(std::string msg) { return Status(StatusCode::timeout, std::move(msg)); }
  static Status in_doubt(std::string msg) { return Status(StatusCode::in_doubt, std::move(msg)); }
  static Status internal(std::string msg) { return Status(StatusCode::internal, std::move(msg)); }
  static Status stale(std::string msg) { return Status(StatusCode::stale, std::move(msg)); }
  static Status invalid(std::string msg) { return Status(StatusCode::invalid, std::move(msg)); }

  bool ok() const { return code_ == StatusCode::ok; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "ok", or "<code>: <message>" (one line, no secrets: messages never carry a password).
  std::string to_string() const;

 private:
  Status(StatusCode c, std::string m) : code_(c), message_(std::move(m)) {}
  StatusCode code_ = StatusCode::ok;
  std::string message_;
};

// A T, or the Status that says why there is none. Constructing from an ok Status is a bug.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  // An ok `s` (a bug) asserts in debug builds and becomes `internal` in release builds.
  Result(Status s) : v_(not_ok(std::move(s))) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  // ok when a value is held.
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  static Status not_ok(Status s) {
    assert(!s.ok() && "a Result was made from an ok Status");
    return s.ok() ? Status::internal("a Result was made from an ok Status") : s;
  }
  std::variant<T, Status> v_;
};

}  // namespace quizflow
