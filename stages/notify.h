// notify stage: notification messages (spec §4) built from committed batches.
#pragma once

#include <string>

#include "pipeline/events.h"
#include "pipeline/notifier.h"

namespace quizflow::stages {

// `answer_result` for an answer that became the counted one; keyed by user_id, with the
// deterministic notification_id "answer_result:<event_id>".
Notification answer_result(const AnswerEvent& e);

}  // namespace quizflow::stages
