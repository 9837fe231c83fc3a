// Log set-up for the whole process (spdlog): level and format from the config. Plain lines, or
// JSON lines {"ts":…,"level":…,"msg":…} with the message escaped. Never log a password or token:
// log mask_url(DATABASE_URL), never the token.
#pragma once

#include "core/config.h"

namespace quizflow {

void setup_logging(const Config& c);

}  // namespace quizflow
