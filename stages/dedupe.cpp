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

DistinctEvents without(std::span<const AnswerEvent* const> events, const DistinctEvents& d,
                       const std::vector<size_t>& refused) {
  std::vector<int32_t> renumbered(d.events.size(), 0);  // old slot -> new slot or kRefusedSlot
  for (size_t r : refused)
    if (r < renumbered.size()) renumbered[r] = kRefusedSlot;
  DistinctEvents out;
  for (size_t s = 0; s < d.events.size(); ++s) {
    if (renumbered[s] == kRefusedSlot) continue;
    renumbered[s] = static_cast<int32_t>(out.events.size());
    out.events.push_back(d.events[s]);
  }
  std::unordered_map<EventKey, int32_t, EventKeyHash> slot_by_key;  // new slot per identity
  slot_by_key.reserve(d.events.size());
  for (size_t s = 0; s < d.events.size(); ++s)
    slot_by_key.emplace(EventKey{d.events[s]->quiz_id, d.events[s]->event_id}, renumbered[s]);
  out.slot_of.reserve(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    const int32_t old = i < d.slot_of.size() ? d.slot_of[i] : -1;
    if (old >= 0) {
      out.slot_of.push_back(renumbered[static_cast<size_t>(old)]);
      continue;
    }
    // A repeat: refused with its first occurrence, else a repeat still.
    auto it = slot_by_key.find(EventKey{events[i]->quiz_id, events[i]->event_id});
    out.slot_of.push_back(it != slot_by_key.end() && it->second == kRefusedSlot ? kRefusedSlot
                                                                                : -1);
  }
  return out;
}

}  // namespace quizflow::stages
