// What Debian's RapidJSON 1.1.0 would misread in a JSON text, checked before parsing it (the
// answer, request and quiz decoders): a raw NUL byte (read as the end of the input: anything
// after it ignored), and a \uDC00-\uDFFF escape that does not complete a surrogate pair
// (decoded into bytes that are not UTF-8 — Tencent/rapidjson#1738, rejected by later versions —
// which PostgreSQL refuses and error texts echoing a field name would carry).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace quizflow {

struct MisreadJson {
  size_t offset = 0;
  std::string message;  // "raw NUL byte in the <what>", or RapidJSON's own surrogate message
};

// The first such problem of `text` (`what` names it in the message: "input", "body"), or nullopt.
std::optional<MisreadJson> misread_json(std::string_view text, std::string_view what);

}  // namespace quizflow
