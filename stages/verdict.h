// The verdict of each answer of a finished batch transaction (spec §3 results).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/events.h"
#include "core/status.h"

namespace quizflow::stages {

// For one event of a transaction (`slot`: its index among the transaction's distinct events, -1
// when it repeated an earlier event_id of the same transaction; `inserted`: the writer's per
// distinct event flags when it committed):
// - transaction failed: rejected "storage_unavailable" (the HTTP answer is 503; a resend is
//   safe and is never counted twice — it is answered `duplicate` in the rare case the answer
//   was stored after all, a COMMIT whose outcome could not be resolved);
// - repeated in the transaction, or stored before: duplicate;
// - the database refused the event's data (slot kRefusedSlot, stages/dedupe.h): rejected
//   "storage_rejected" with `refused_why`, whatever became of the transaction (the others of it
//   were committed without it; a resend is refused again);
// - otherwise: accepted (a superseded answer is accepted too: it is in the event log).
Verdict commit_verdict(const Status& txn, int32_t slot, const std::vector<bool>& inserted,
                       const std::string& refused_why = {});

}  // namespace quizflow::stages
