#include "stages/dedupe.h"

#include <string_view>
#include <unordered_map>

namespace quizflow::stages {

DistinctEvents dedupe(std::span<const AnswerEvent* const> events) {
  DistinctEvents d;
  d.events.reserve(events.size());
  d.slot_of.reserve(events.size());
  std::unordered_map<std::string_view, int32_t> first;
  first.reserve(events.size());
  for (const AnswerEvent* e : events) {
    auto [it, fresh] = first.try_emplace(e->event_id, static_cast<int32_t>(d.events.size()));
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
