// Duplicates within one batch transaction (spec §3: the same (quiz_id, event_id) again is a
// duplicate and changes nothing; event ids are unique per quiz, not across quizzes). One SQL
// statement must not touch a key twice, so a transaction's events are made distinct by
// (quiz_id, event_id) before they reach the writer; a repeat is answered `duplicate`.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/events.h"

namespace quizflow::stages {

// The distinct events of a transaction. Points to the events given to dedupe(): valid while
// they live.
struct DistinctEvents {
  // First occurrence of each (quiz_id, event_id), in input order.
  std::vector<const AnswerEvent*> events;
  // Per input event: index into `events`, or -1 when an earlier input event has its identity.
  std::vector<int32_t> slot_of;
};

DistinctEvents dedupe(std::span<const AnswerEvent* const> events);

// `slot_of` of an input event whose data the database refused (and of its repeats).
inline constexpr int32_t kRefusedSlot = -2;

// `d` (made by dedupe(`events`)) without the distinct events at the indexes `refused` (found
// refused by the database, BatchWriter::refused_events): they and their repeats get
// kRefusedSlot, the others keep their events in order with their slots renumbered.
DistinctEvents without(std::span<const AnswerEvent* const> events, const DistinctEvents& d,
                       const std::vector<size_t>& refused);

}  // namespace quizflow::stages
