// The counted-answer and standings changes of a batch transaction (spec §4), computed from the
// events the event log took as new, and applied to the in-memory standings once committed.
// Derivation happens inside the transaction (the writer stores its rows); application after
// COMMIT, so memory and database never diverge.
#pragma once

#include <cstddef>
#include <vector>

#include "core/store.h"
#include "stages/dedupe.h"
#include "stages/score.h"

namespace quizflow::stages {

struct TxnChanges {
  std::vector<Proposal> proposals;  // one per quiz that had new events, in order of appearance
  std::vector<size_t> counted;      // indexes into DistinctEvents::events now counted
};

// `inserted[i]` tells whether d.events[i] was new in the event log. Reads the standings of the
// transaction's quizzes (shared locks; they must be loaded: std::logic_error otherwise) and
// the rank moves to notify under `policy`; changes nothing.
TxnChanges derive(const DistinctEvents& d, const std::vector<bool>& inserted,
                  const StandingsBook& book, const RankPolicy& policy = {});

// The rows the writer stores for `c`: every proposal's counted answers and standings.
DerivedRows rows_of(const TxnChanges& c);

// Applies committed changes to the standings of the quizzes in memory (exclusive lock per quiz).
void apply(StandingsBook& book, const TxnChanges& c);

}  // namespace quizflow::stages
