#include "stages/derive.h"

#include <stdexcept>
#include <string>
#include <unordered_map>

namespace quizflow::stages {

TxnChanges derive(const DistinctEvents& d, const std::vector<bool>& inserted,
                  const StandingsBook& book, const RankPolicy& policy) {
  // The new events of each quiz, quizzes in order of first appearance.
  std::unordered_map<int64_t, size_t> group_of;
  std::vector<int64_t> quizzes;
  std::vector<std::vector<const AnswerEvent*>> fresh;
  std::vector<std::vector<size_t>> fresh_index;
  for (size_t i = 0; i < d.events.size(); ++i) {
    if (!inserted[i]) continue;
    const int64_t quiz = d.events[i]->quiz_id;
    auto [it, first] = group_of.try_emplace(quiz, quizzes.size());
    if (first) {
      quizzes.push_back(quiz);
      fresh.emplace_back();
      fresh_index.emplace_back();
    }
    fresh[it->second].push_back(d.events[i]);
    fresh_index[it->second].push_back(i);
  }
  TxnChanges c;
  c.proposals.reserve(quizzes.size());
  for (size_t g = 0; g < quizzes.size(); ++g) {
    const int64_t quiz = quizzes[g];
    Proposal p = book.read_versioned(quiz, [&](const QuizStandings* s, int64_t version) {
      if (!s)
        throw std::logic_error("the standings of quiz " + std::to_string(quiz) + " are not loaded");
      Proposal prop = s->propose(quiz, fresh[g]);
      prop.moves = s->rank_moves(prop, policy);
      prop.policy = policy;
      prop.version = version;
      return prop;
    });
    for (size_t k : p.newly_counted) c.counted.push_back(fresh_index[g][k]);
    c.proposals.push_back(std::move(p));
  }
  return c;
}

DerivedRows rows_of(const TxnChanges& c) {
  DerivedRows rows;
  size_t nc = 0, ns = 0;
  for (const auto& p : c.proposals) {
    nc += p.counted.size();
    ns += p.standings.size();
  }
  rows.counted.reserve(nc);
  rows.standings.reserve(ns);
  for (const auto& p : c.proposals) {
    rows.counted.insert(rows.counted.end(), p.counted.begin(), p.counted.end());
    rows.standings.insert(rows.standings.end(), p.standings.begin(), p.standings.end());
  }
  return rows;
}

void apply(StandingsBook& book, const TxnChanges& c) {
  for (const auto& p : c.proposals) {
    if (p.counted.empty() && p.standings.empty()) continue;
    // A quiz that left memory meanwhile (finalized) is not brought back; one reloaded at a
    // newer version (a replay rebuilt it) holds this change already.
    book.update_at(p.quiz_id, p.version, [&](QuizStandings& s) { s.apply(p); });
  }
}

}  // namespace quizflow::stages
