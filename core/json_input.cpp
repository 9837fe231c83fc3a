#include "core/json_input.h"

#include <rapidjson/error/en.h>

#include <charconv>

namespace quizflow {
namespace {

// The offset of a \uDC00-\uDFFF escape that does not complete a surrogate pair, or npos. A
// backslash outside a string fails the parse anyway.
size_t lone_low_surrogate(std::string_view s) {
  size_t pair_end = std::string_view::npos;  // where a low surrogate completes a pair
  for (size_t i = s.find('\\'); i != std::string_view::npos; i = s.find('\\', i)) {
    unsigned cp = 0;
    bool u_escape = false;
    if (i + 6 <= s.size() && s[i + 1] == 'u') {
      const char* hex = s.data() + i + 2;
      u_escape = std::from_chars(hex, hex + 4, cp, 16).ptr == hex + 4;
    }
    if (!u_escape) {  // another escape (\\ included), or a malformed \u one
      i += 2;
      continue;
    }
    if (cp >= 0xDC00 && cp <= 0xDFFF && i != pair_end) return i;
    pair_end = cp >= 0xD800 && cp <= 0xDBFF ? i + 6 : std::string_view::npos;
    i += 6;
  }
  return std::string_view::npos;
}

}  // namespace

std::optional<MisreadJson> misread_json(std::string_view text, std::string_view what) {
  if (const size_t at = text.find('\0'); at != std::string_view::npos)
    return MisreadJson{at, "raw NUL byte in the " + std::string(what)};
  if (const size_t at = lone_low_surrogate(text); at != std::string_view::npos)
    return MisreadJson{
        at, rapidjson::GetParseError_En(rapidjson::kParseErrorStringUnicodeSurrogateInvalid)};
  return std::nullopt;
}

}  // namespace quizflow
