// Log set-up for the whole process (spdlog): level and format from the config. Plain lines, or
// JSON lines {"ts":…,"level":…,"msg":…} with the message escaped. Never log a password or token:
// log mask_url(DATABASE_URL), never the token.
#pragma once

#include "core/config.h"

namespace quizflow {

// `to_stderr`: log to standard error (for commands whose standard output is data).
void setup_logging(const Config& c, bool to_stderr = false);

}  // namespace quizflow
