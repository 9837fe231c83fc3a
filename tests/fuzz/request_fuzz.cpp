// Fuzz target: the path of a POST /v1/answers body without I/O, stage by stage as the graph runs
// it (pipeline/graph.cpp): decode_request, validate against a small catalog, the batch buffers,
// dedupe, an in-memory event log standing in for PostgreSQL, derive, apply, commit_verdict.
// Input: up to kMaxRequests bodies separated by NUL bytes, submitted in turn to the same state;
// then the first body is sent again. Invariants:
// - a failed request has no items, a code, status 400 (413 for too_many_answers), and completes
//   once; otherwise it has 0..max_batch items (1 for a single answer) and completes exactly once,
//   when its last item is resolved, with every item decided and each rejection coded;
// - validate rejects with its codes only, and a passing event carries correct and points as the
//   quiz defines them; no event of a quiz the standings do not hold reaches derive;
// - batches hold one quiz and at most max_size events; dedupe keeps the first of each
//   (quiz_id, event_id); an item is accepted exactly when its event was new to the log;
// - the standings equal a brute-force model of the log (each (user, question) counts its
//   earliest answer by (answered_at, event_id)), ranks included;
// - resending a body changes nothing: its accepted items become duplicates, its rejections stay.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "core/quiz.h"
#include "core/request.h"
#include "fuzz_check.h"
#include "pipeline/engine.h"
#include "stages/batch.h"
#include "stages/dedupe.h"
#include "stages/derive.h"
#include "stages/score.h"
#include "stages/validate.h"
#include "stages/verdict.h"

namespace quizflow::fuzz {
namespace {

constexpr size_t kMaxBatch = 16;  // small, so that too_many_answers is within reach
constexpr size_t kMaxRequests = 4;
constexpr size_t kBatchSize = 3;  // small, so that a request spans several transactions
constexpr size_t kTopN = 3;

// Quiz 1 open for decades, 2 closed by request, 3 finalized, 4 open for one hour of 2026.
const CatalogSnapshot& catalog() {
  static const std::shared_ptr<const CatalogSnapshot> snap = [] {
    const char* defs[] = {
        R"({"quiz_id":1,"title":"Open","opens_at":"2020-01-01T00:00:00Z",
            "closes_at":"2100-01-01T00:00:00Z","questions":[
            {"question_id":1,"option_count":4,"correct_option":2},
            {"question_id":2,"option_count":2,"correct_option":0,"points":100000,
             "time_limit_ms":600000},
            {"question_id":7,"option_count":10,"correct_option":9,"points":1,
             "time_limit_ms":1000}]})",
        R"({"quiz_id":2,"title":"Closed","opens_at":"2020-01-01T00:00:00Z",
            "closes_at":"2100-01-01T00:00:00Z",
            "questions":[{"question_id":1,"option_count":2,"correct_option":1}]})",
        R"({"quiz_id":4,"title":"One hour","opens_at":"2026-03-01T10:00:00Z",
            "closes_at":"2026-03-01T11:00:00+00:00",
            "questions":[{"question_id":1,"option_count":3,"correct_option":1,"points":500}]})",
    };
    Catalog c;
    for (const char* json : defs) {
      const QuizDecodeResult d = decode_quiz(json);
      QF_FUZZ_CHECK(d.quiz.has_value());
      c.put(*d.quiz);
    }
    c.set_state(2, QuizState::closed);
    c.set_state(3, QuizState::finalized);
    return c.snapshot();
  }();
  return *snap;
}

constexpr int64_t kScoredQuizzes[] = {1, 4};  // the quizzes whose standings are in memory

bool is_validate_code(const std::string& c) {
  return c == "unknown_quiz" || c == "quiz_finalized" || c == "quiz_not_open" ||
         c == "unknown_question" || c == "option_out_of_range" || c == "elapsed_out_of_range";
}

using LogKey = std::pair<int64_t, std::string>;  // (quiz_id, event_id)

// The engine's state across requests: standings in memory and the event log they derive from.
struct World {
  stages::StandingsBook book;
  std::map<LogKey, AnswerEvent> log;  // PostgreSQL's answer_events, ON CONFLICT DO NOTHING

  World() {
    for (int64_t q : kScoredQuizzes) book.add_empty(q);
  }
};

// A validated event carries what the quiz defines.
void check_passed(const AnswerEvent& e) {
  const QuizDef* q = catalog().find(e.quiz_id);
  QF_FUZZ_CHECK(q != nullptr);
  QF_FUZZ_CHECK(std::find(std::begin(kScoredQuizzes), std::end(kScoredQuizzes), e.quiz_id) !=
                std::end(kScoredQuizzes));
  QF_FUZZ_CHECK(e.answered_at_ms >= q->opens_at_ms && e.answered_at_ms < q->closes_at_ms);
  const Question* qu = q->find_question(e.question_id);
  QF_FUZZ_CHECK(qu != nullptr);
  QF_FUZZ_CHECK(e.option_id >= 0 && e.option_id < qu->option_count);
  QF_FUZZ_CHECK(e.elapsed_ms >= 0 && e.elapsed_ms <= qu->time_limit_ms);
  QF_FUZZ_CHECK(e.correct == (e.option_id == qu->correct_option));
  if (e.correct) {
    QF_FUZZ_CHECK(e.points == stages::points_for(qu->points, e.elapsed_ms, qu->time_limit_ms));
    QF_FUZZ_CHECK(e.points >= (qu->points + 1) / 2 && e.points <= qu->points);
  } else {
    QF_FUZZ_CHECK(e.points == 0);
  }
}

// One transaction of the commit stage: dedupe, the log's insert, derive, apply, the verdicts.
void commit(World& w, const std::vector<stages::QuizBatch>& batches) {
  std::vector<const AnswerEvent*> in_order;
  for (const auto& b : batches) {
    QF_FUZZ_CHECK(!b.events.empty() && b.events.size() <= kBatchSize);
    for (const EventRef& ref : b.events) {
      QF_FUZZ_CHECK(ref.event().quiz_id == b.quiz_id);
      in_order.push_back(&ref.event());
    }
  }
  const stages::DistinctEvents d = stages::dedupe(in_order);
  QF_FUZZ_CHECK(d.slot_of.size() == in_order.size());
  for (size_t i = 0; i < in_order.size(); ++i) {
    const LogKey key{in_order[i]->quiz_id, in_order[i]->event_id};
    size_t first = 0;
    while (LogKey{in_order[first]->quiz_id, in_order[first]->event_id} != key) ++first;
    if (first == i) {
      QF_FUZZ_CHECK(d.slot_of[i] >= 0 && static_cast<size_t>(d.slot_of[i]) < d.events.size());
      QF_FUZZ_CHECK(d.events[static_cast<size_t>(d.slot_of[i])] == in_order[i]);
    } else {
      QF_FUZZ_CHECK(d.slot_of[i] == -1);
    }
  }
  std::vector<bool> inserted(d.events.size());
  for (size_t k = 0; k < d.events.size(); ++k)
    inserted[k] =
        w.log.try_emplace(LogKey{d.events[k]->quiz_id, d.events[k]->event_id}, *d.events[k]).second;
  const stages::RankPolicy policy{kTopN, 0, 0};
  const stages::TxnChanges changes = stages::derive(d, inserted, w.book, policy);
  for (size_t k : changes.counted) QF_FUZZ_CHECK(k < inserted.size() && inserted[k]);
  for (const auto& p : changes.proposals) {
    for (const auto& m : p.moves) QF_FUZZ_CHECK(m.rank >= 1 && m.rank <= int64_t{kTopN});
  }
  stages::apply(w.book, changes);
  size_t i = 0;
  for (const auto& b : batches) {
    for (const EventRef& ref : b.events) {
      const int32_t slot = d.slot_of[i++];
      ref.request->resolve(ref.index, stages::commit_verdict(Status(), slot, inserted));
    }
  }
}

// Runs one body through the stages; returns its items' verdicts.
std::vector<Verdict> submit(World& w, std::string body) {
  int completions = 0;
  auto r = std::make_shared<Request>(std::move(body), [&](Request&) { ++completions; });
  const size_t decoded = decode_request(*r, kMaxBatch);
  size_t events = 0;
  for (const Item& it : r->items) {
    events += it.event.has_value();
    if (it.event) {
      QF_FUZZ_CHECK(it.verdict.status == ItemStatus::pending);
    } else {
      QF_FUZZ_CHECK(it.verdict.status == ItemStatus::rejected && it.verdict.code == "schema");
    }
  }
  QF_FUZZ_CHECK(events == decoded);
  if (r->error) {
    QF_FUZZ_CHECK(r->items.empty() && !r->error->code.empty());
    QF_FUZZ_CHECK(r->error->http_status == (r->error->code == "too_many_answers" ? 413 : 400));
    r->fail(*r->error);
    QF_FUZZ_CHECK(completions == 1 && r->finished());
    return {};
  }
  QF_FUZZ_CHECK(r->items.size() <= kMaxBatch);
  QF_FUZZ_CHECK(!r->single || r->items.size() == 1);
  r->arm(decoded);
  QF_FUZZ_CHECK(r->finished() == (decoded == 0) && completions == (decoded == 0 ? 1 : 0));

  // validate: rejections are resolved after the accepted events went on (as the graph does).
  std::vector<uint32_t> passed;
  std::vector<std::pair<uint32_t, Verdict>> rejects;
  for (uint32_t i = 0; i < r->items.size(); ++i) {
    Item& item = r->items[i];
    if (!item.event) continue;
    Verdict v = stages::validate(*item.event, catalog());
    if (v.status == ItemStatus::rejected) {
      QF_FUZZ_CHECK(is_validate_code(v.code) && !v.message.empty() && !v.field.empty());
      rejects.emplace_back(i, std::move(v));
    } else {
      QF_FUZZ_CHECK(v.status == ItemStatus::pending && v.code.empty());
      check_passed(*item.event);
      passed.push_back(i);
    }
  }
  stages::BatchBuffers buffers(stages::BatchPolicy{kBatchSize, 5});
  for (uint32_t i : passed) buffers.add(EventRef{r, i}, 0);
  for (auto& [i, v] : rejects) r->resolve(i, std::move(v));
  QF_FUZZ_CHECK(completions == 0 || passed.empty());

  // batch + commit + score: every due batch, one transaction at a time.
  while (buffers.pending_events() > 0) {
    const std::vector<stages::QuizBatch> due = buffers.take_due(0, true);
    QF_FUZZ_CHECK(!due.empty());
    commit(w, due);
    for (const auto& b : due) buffers.done(b.quiz_id);
  }
  QF_FUZZ_CHECK(buffers.in_flight_batches() == 0);
  QF_FUZZ_CHECK(completions == 1 && r->finished());

  std::vector<Verdict> out;
  for (const Item& it : r->items) {
    QF_FUZZ_CHECK(it.verdict.status != ItemStatus::pending);
    if (it.verdict.status == ItemStatus::rejected) {
      QF_FUZZ_CHECK(!it.verdict.code.empty() && !it.verdict.server_failure());
    } else {
      QF_FUZZ_CHECK(it.event.has_value());
      auto stored = w.log.find(LogKey{it.event->quiz_id, it.event->event_id});
      QF_FUZZ_CHECK(stored != w.log.end());
      if (it.verdict.status == ItemStatus::accepted)
        QF_FUZZ_CHECK(same_decoded_fields(stored->second, *it.event));
    }
    out.push_back(it.verdict);
  }
  return out;
}

// The standings of `quiz` computed from the log by brute force, in rank order.
std::vector<StandingEntry> model_standings(const World& w, int64_t quiz) {
  std::map<std::pair<int64_t, int32_t>, const AnswerEvent*> counted;  // (user, question)
  for (const auto& [key, e] : w.log) {
    if (key.first != quiz) continue;
    auto [it, fresh] = counted.try_emplace({e.user_id, e.question_id}, &e);
    const AnswerEvent& c = *it->second;
    if (!fresh && std::tie(e.answered_at_ms, e.event_id) < std::tie(c.answered_at_ms, c.event_id))
      it->second = &e;
  }
  std::map<int64_t, Standing> by_user;
  for (const auto& [key, e] : counted) {
    Standing& s = by_user[key.first];
    s.score += e->points;
    s.correct += e->correct ? 1 : 0;
    s.time_ms += e->elapsed_ms;
  }
  std::vector<StandingEntry> out;
  for (const auto& [user, s] : by_user) out.push_back(StandingEntry{0, user, s});
  std::sort(out.begin(), out.end(), [](const StandingEntry& a, const StandingEntry& b) {
    return RankKey{a.standing.score, a.standing.correct, a.standing.time_ms, a.user_id} <
           RankKey{b.standing.score, b.standing.correct, b.standing.time_ms, b.user_id};
  });
  for (size_t i = 0; i < out.size(); ++i) out[i].rank = static_cast<int64_t>(i) + 1;
  return out;
}

std::vector<StandingEntry> standings(const World& w, int64_t quiz) {
  return w.book.read(quiz, [](const stages::QuizStandings* s) {
    QF_FUZZ_CHECK(s != nullptr);
    std::vector<StandingEntry> page = s->page(0, s->players() + 1);
    QF_FUZZ_CHECK(page.size() == s->players());
    for (const StandingEntry& e : page) {
      const auto found = s->find(e.user_id);
      QF_FUZZ_CHECK(found && found->rank == e.rank && found->standing == e.standing);
    }
    return page;
  });
}

bool same_standings(const std::vector<StandingEntry>& a, const std::vector<StandingEntry>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.rank == y.rank && x.user_id == y.user_id && x.standing == y.standing;
  });
}

void run(std::string_view input) {
  std::vector<std::string> bodies;
  size_t start = 0;
  while (bodies.size() < kMaxRequests) {
    const size_t end = std::min(input.find('\0', start), input.size());
    bodies.emplace_back(input.substr(start, end - start));
    if (end == input.size()) break;
    start = end + 1;
  }
  World w;
  std::vector<Verdict> first;
  for (size_t i = 0; i < bodies.size(); ++i) {
    std::vector<Verdict> v = submit(w, bodies[i]);
    if (i == 0) first = std::move(v);
  }
  std::vector<std::vector<StandingEntry>> before;
  for (int64_t q : kScoredQuizzes) {
    before.push_back(standings(w, q));
    QF_FUZZ_CHECK(same_standings(before.back(), model_standings(w, q)));
  }

  // A resend is answered from the log and changes nothing.
  const size_t logged = w.log.size();
  const std::vector<Verdict> again = submit(w, bodies[0]);
  QF_FUZZ_CHECK(again.size() == first.size() && w.log.size() == logged);
  for (size_t i = 0; i < first.size(); ++i) {
    if (first[i].status == ItemStatus::rejected)
      QF_FUZZ_CHECK(same_verdict(again[i], first[i]));
    else
      QF_FUZZ_CHECK(again[i].status == ItemStatus::duplicate);
  }
  for (size_t k = 0; k < std::size(kScoredQuizzes); ++k)
    QF_FUZZ_CHECK(same_standings(standings(w, kScoredQuizzes[k]), before[k]));
}

}  // namespace
}  // namespace quizflow::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  quizflow::fuzz::run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
