// notify stage: notification messages (spec §4) built from committed batches.
#pragma once

#include <string>
#include <vector>

#include "core/events.h"
#include "core/notifier.h"
#include "stages/dedupe.h"
#include "stages/derive.h"

namespace quizflow::stages {

// `answer_result` for an answer that became the counted one; keyed by user_id, with the
// deterministic notification_id "answer_result:<event_id>".
Notification answer_result(const AnswerEvent& e);

// One `answer_result` per answer of a committed transaction that became the counted one.
std::vector<Notification> answer_results(const DistinctEvents& d, const TxnChanges& c);

}  // namespace quizflow::stages
