#include "core/status.h"

namespace quizflow {

const char* to_string(StatusCode c) {
  switch (c) {
    case StatusCode::ok:
      return "ok";
    case StatusCode::unavailable:
      return "unavailable";
    case StatusCode::timeout:
      return "timeout";
    case StatusCode::in_doubt:
      return "in_doubt";
    case StatusCode::internal:
      return "internal";
    case StatusCode::stale:
      return "stale";
    case StatusCode::invalid:
      return "invalid";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(quizflow::to_string(code_)) + ": " + message_;
}

}  // namespace quizflow
