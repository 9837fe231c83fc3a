// The payload of an outbox row: one line "key<TAB>value" per message. Keys are user ids
// (digits) and values JSON text, which never holds a raw tab or newline (JSON escapes them).
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/notifier.h"

namespace quizflow::egress {

std::string encode_outbox(std::span<const Notification> messages);
// Lines without a tab are skipped (none are written).
std::vector<Notification> decode_outbox(std::string_view payload);

// A PostgreSQL array literal of ids: {1,2,3}.
std::string pg_id_array(const std::vector<int64_t>& ids);

}  // namespace quizflow::egress
