// ingest stage: request bytes -> typed answer events (strict schema, spec §3) or rejections.
#pragma once

#include <cstddef>
#include <string_view>

#include "core/request.h"

namespace quizflow::stages {

struct IngestLimits {
  size_t max_batch = 1000;  // items in {"answers":[...]}
};

// Decodes `r.body` into `r.items` (one per answer; schema failures get a `rejected` verdict with
// code "schema" and the field) and sets `r.single`. A request-level problem (not JSON, not an
// object, `answers` not an array or too long) sets `r.error` and leaves `items` empty.
// Returns the number of items that decoded (their verdicts are still pending). Never throws on
// any input.
size_t ingest(Request& r, const IngestLimits& limits);

// Decodes one answer object given as JSON text (for tests and the Kafka source).
Item decode_answer_json(std::string_view json);

}  // namespace quizflow::stages
