// notify stage: notification messages (spec §4), keyed by user_id, each with a deterministic
// notification_id derived from what caused it (quiz, type, user, and the causing event,
// transaction or finalization), so that consumers can drop duplicates.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/events.h"
#include "core/notifier.h"
#include "core/standing.h"
#include "stages/dedupe.h"
#include "stages/derive.h"

namespace quizflow::stages {

// `answer_result` for an answer that became the counted one:
// id "answer_result:<quiz>:<user>:<event_id>".
Notification answer_result(const AnswerEvent& e);

// `rank_changed`: the player entered or moved within the top N, caused by the transaction
// `batch_key`: id "rank_changed:<quiz>:<user>:<batch_key>". previous_rank 0: was not ranked.
Notification rank_changed(int64_t quiz_id, const RankMove& m, std::string_view batch_key);

// `quiz_results` at finalization: id "quiz_results:<quiz>:<user>".
Notification quiz_results(int64_t quiz_id, int64_t user_id, int64_t rank, const Standing& s);

// `reward_granted` at finalization: id "reward_granted:<quiz>:<user>".
Notification reward_granted(int64_t quiz_id, int64_t user_id, int64_t rank,
                            const std::string& reward);

// The notifications of a committed batch transaction: one `answer_result` per answer that
// became the counted one, then the `rank_changed` of every proposal.
std::vector<Notification> batch_notifications(const DistinctEvents& d, const TxnChanges& c,
                                              std::string_view batch_key);

}  // namespace quizflow::stages
