#include "stages/verdict.h"

#include "stages/dedupe.h"

namespace quizflow::stages {

Verdict commit_verdict(const Status& txn, int32_t slot, const std::vector<bool>& inserted,
                       const std::string& refused_why) {
  if (slot == kRefusedSlot)
    return Verdict::reject(kStorageRejected,
                           "the database refused this answer's data (" + refused_why + ")");
  if (!txn.ok())
    return Verdict::reject(kStorageUnavailable,
                           "the answer could not be stored; retry the request");
  Verdict v;
  const bool fresh = slot >= 0 && static_cast<size_t>(slot) < inserted.size() &&
                     inserted[static_cast<size_t>(slot)];
  v.status = fresh ? ItemStatus::accepted : ItemStatus::duplicate;
  return v;
}

}  // namespace quizflow::stages
