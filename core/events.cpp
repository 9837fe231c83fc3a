#include "core/events.h"

namespace quizflow {

const char* to_string(ItemStatus s) {
  switch (s) {
    case ItemStatus::pending:
      return "pending";
    case ItemStatus::accepted:
      return "accepted";
    case ItemStatus::duplicate:
      return "duplicate";
    case ItemStatus::rejected:
      return "rejected";
  }
  return "pending";
}

}  // namespace quizflow
