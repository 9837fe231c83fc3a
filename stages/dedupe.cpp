#include "stages/dedupe.h"

#include <functional>
#include <string_view>
#include <unordered_map>

namespace quizflow::stages {
namespace {

struct EventKey {
  int64_t quiz_id;
  std::string_view event_id;
  bool operator==(const EventKey&) const = default;
};
struct EventKeyHash {
  size_t operator()(const EventKey& k) const {
    return std::hash<std::string_view>()(k.event_id) ^
           static_cast<size_t>(static_cast<uint64_t>(k.quiz_id) * 0x9E3779B97F4A7C15ULL);
  }
};

}  // namespace

DistinctEvents dedupe(std::span<const AnswerEvent* const> events) {
  DistinctEvents d;
  d.events.reserve(events.size());
  d.slot_of.reserve(events.size());
  std::unordered_map<EventKey, int32_t, EventKeyHash> first;
  first.reserve(events.size());
  for (const AnswerEvent* e : events) {
    auto [it, fresh] =
        first.try_emplace(EventKey{e->quiz_id, e->event_id}, static_cast<int32_t>(d.events.size()));
    if (fresh) {
      d.events.push_back(e);
      d.slot_of.push_back(it->second);
    } else {
      d.slot_of.push_back(-1);
    }
  }
  return d;
}

}  // namespace quizflow::stages
