// Helpers shared by the fuzz targets: an invariant check that stops the run (libFuzzer keeps the
// input as a crash artifact), and the small predicates several targets check.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "core/events.h"

// Aborts with the failed condition when `cond` is false (also in release builds).
#define QF_FUZZ_CHECK(cond)                                             \
  do {                                                                  \
    if (!(cond)) ::quizflow::fuzz::violated(#cond, __FILE__, __LINE__); \
  } while (0)

namespace quizflow::fuzz {

[[noreturn]] inline void violated(const char* what, const char* file, int line) {
  std::fprintf(stderr, "fuzz invariant violated: %s (%s:%d)\n", what, file, line);
  std::abort();
}

// Well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF).
inline bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    // Continuation bytes `n` and the lead byte's payload bits.
    size_t n = 0;
    unsigned cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0u) != 0x80u) return false;
      cp = (cp << 6) | (d & 0x3Fu);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

// The event_id rule of spec §3: 1-64 characters of [A-Za-z0-9._:-].
inline bool valid_event_id(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (const char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// The fields ingest decodes (not the ones validate derives).
inline bool same_decoded_fields(const AnswerEvent& a, const AnswerEvent& b) {
  return a.event_id == b.event_id && a.quiz_id == b.quiz_id && a.user_id == b.user_id &&
         a.question_id == b.question_id && a.option_id == b.option_id &&
         a.answered_at_ms == b.answered_at_ms && a.elapsed_ms == b.elapsed_ms;
}

inline bool same_verdict(const Verdict& a, const Verdict& b) {
  return a.status == b.status && a.code == b.code && a.message == b.message && a.field == b.field;
}

}  // namespace quizflow::fuzz
