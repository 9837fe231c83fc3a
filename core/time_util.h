// RFC 3339 timestamps <-> milliseconds since the Unix epoch.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace quizflow {

// Parses "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)" (T or t or space, Z or z).
// Returns milliseconds since the epoch (fraction truncated to ms), or nullopt when malformed or
// out of range (years 0001-9999, valid calendar date, hour<24, minute<60, second<60).
std::optional<int64_t> parse_rfc3339_ms(std::string_view text);

// Formats as "YYYY-MM-DDTHH:MM:SS.mmmZ".
std::string format_rfc3339_ms(int64_t ms);

// Current wall-clock time in ms since the epoch.
int64_t now_ms();

// Monotonic milliseconds (steady clock, arbitrary origin): for durations and deadlines.
int64_t steady_ms();

}  // namespace quizflow
