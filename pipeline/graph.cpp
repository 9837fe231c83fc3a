#include "pipeline/graph.h"

#include <oneapi/tbb/flow_graph.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <variant>

#include "core/log_rate.h"
#include "core/time_util.h"
#include "pipeline/deadline_timer.h"
#include "stages/batch.h"
#include "stages/dedupe.h"
#include "stages/derive.h"
#include "stages/finalize.h"
#include "stages/ingest.h"
#include "stages/notify.h"
#include "stages/validate.h"
#include "stages/verdict.h"

namespace quizflow {
namespace flow = tbb::flow;
namespace {

using Clock = std::chrono::steady_clock;

int64_t since_us(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count();
}

// A request whose accepted candidates (indexes into items) go on to the batch stage.
struct Validated {
  RequestPtr request;
  std::vector<uint32_t> accepted;
  Clock::time_point enqueued = Clock::now();
};
struct Tick {};
struct QuizDone {  // a batch transaction finished: its quizzes may start their next batch
  std::vector<int64_t> quiz_ids;
  int64_t events = 0;
};
struct Schedule {  // finalize a quiz at due_ms (wall clock; 0: now)
  int64_t quiz_id = 0;
  int64_t due_ms = 0;
};
struct FinalizeDone {  // a finalization transaction finished
  int64_t quiz_id = 0;
  bool ok = false;
};
using BatchInput = std::variant<Validated, Tick, QuizDone, Schedule, FinalizeDone>;

// One batch transaction (or one quiz's finalization) on its way through the commit and score
// stages.
struct CommitJob {
  Clock::time_point enqueued = Clock::now();
  std::vector<stages::QuizBatch> batches;  // each quiz's batch whole
  int64_t events = 0;                      // over all batches
  BatchTxn txn;                            // what the writer stores (events: distinct.events)
  stages::DistinctEvents distinct;
  // Events the database refused (their slot kRefusedSlot): answered storage_rejected, the rest
  // of the transaction committed without them.
  int64_t refused = 0;
  std::map<std::pair<int64_t, std::string>, std::string> refused_why;  // by (quiz_id, event_id)
  Result<Committed> result{Status::internal("the transaction did not run")};
  stages::TxnChanges changes;          // derived inside the transaction, applied by score
  std::vector<Notification> messages;  // caused by the transaction (in its outbox row)
  int64_t commit_us = 0;
  // A finalization instead of a batch: the quiz, and what its transaction did.
  std::shared_ptr<const QuizDef> finalize;
  Result<Finalized> finalized{Status::internal("the finalization did not run")};
};
using CommitJobPtr = std::shared_ptr<CommitJob>;

struct NotifyChunk {
  std::vector<OutboxGroup> groups;
  Clock::time_point enqueued = Clock::now();
  int64_t messages() const {
    int64_t n = 0;
    for (const OutboxGroup& g : groups) n += static_cast<int64_t>(g.messages.size());
    return n;
  }
};
using NotifyChunkPtr = std::shared_ptr<NotifyChunk>;

using IngestNode = flow::multifunction_node<RequestPtr, std::tuple<BatchInput>>;
using ValidateNode = flow::multifunction_node<BatchInput, std::tuple<BatchInput>>;
using BatchNode = flow::multifunction_node<BatchInput, std::tuple<CommitJobPtr>>;
using CommitNode = flow::async_node<CommitJobPtr, CommitJobPtr>;
using ScoreNode = flow::multifunction_node<CommitJobPtr, std::tuple<NotifyChunkPtr, BatchInput>>;
using NotifyNode = flow::function_node<NotifyChunkPtr, flow::continue_msg>;

// Marks a chunk in flight in a stage for the scope's life and records how long it waited.
class StageScope {
 public:
  StageScope(StageMetrics& m, Clock::time_point enqueued, Clock::time_point started) : m_(m) {
    m_.in_flight.fetch_add(1, std::memory_order_relaxed);
    m_.oldest_wait_us.store(
        std::chrono::duration_cast<std::chrono::microseconds>(started - enqueued).count(),
        std::memory_order_relaxed);
  }
  ~StageScope() { m_.in_flight.fetch_sub(1, std::memory_order_relaxed); }
  StageScope(const StageScope&) = delete;
  StageScope& operator=(const StageScope&) = delete;

 private:
  StageMetrics& m_;
};

// Settles every item of `r` that still waits for a verdict: the engine failed it. Returns how
// many it settled.
int64_t settle_pending(Request& r) {
  int64_t n = 0;
  for (uint32_t i = 0; i < r.items.size(); ++i) {
    if (r.items[i].event && r.items[i].verdict.status == ItemStatus::pending) {
      r.resolve(i, Verdict::internal_error());
      ++n;
    }
  }
  return n;
}

}  // namespace

struct Graph::Impl {
  explicit Impl(GraphDeps d)
      : deps(d),
        buffers(stages::BatchPolicy{static_cast<size_t>(d.config.batch_max_size),
                                    d.config.batch_max_delay_ms}),
        ingest(g, flow::unlimited,
               [this](const RequestPtr& r, IngestNode::output_ports_type& p) { on_ingest(r, p); }),
        validate(g, flow::unlimited,
                 [this](const BatchInput& in, ValidateNode::output_ports_type& p) {
                   on_validate(in, p);
                 }),
        batch(g, flow::serial,
              [this](const BatchInput& in, BatchNode::output_ports_type& p) { on_batch(in, p); }),
        commit(
            g, flow::unlimited,
            [this](const CommitJobPtr& job, CommitNode::gateway_type& gw) { on_commit(job, gw); }),
        score(
            g, flow::serial,
            [this](const CommitJobPtr& job, ScoreNode::output_ports_type& p) { on_score(job, p); }),
        notify(g, flow::serial,
               [this](const NotifyChunkPtr& c) {
                 on_notify(c);
                 return flow::continue_msg();
               }),
        timer([this] { send_tick(); }) {
    flow::make_edge(flow::output_port<0>(ingest), validate);
    flow::make_edge(flow::output_port<0>(validate), batch);
    flow::make_edge(flow::output_port<0>(batch), commit);
    flow::make_edge(commit, score);
    flow::make_edge(flow::output_port<0>(score), notify);
    flow::make_edge(flow::output_port<1>(score), batch);

    std::random_device rd;
    char prefix[32];
    std::snprintf(prefix, sizeof prefix, "%08x%08x", rd(), rd());
    batch_prefix = prefix;
  }

  StageMetrics& m(StageIndex i) { return deps.metrics.stages[i]; }

  void send_tick() {
    if (!tick_pending.exchange(true, std::memory_order_acq_rel)) batch.try_put(BatchInput{Tick{}});
  }

  // The error policy of the nodes (docs/error-policy.md): an exception never leaves a node body
  // (it would cancel the whole graph). It is logged at a bounded rate and counted, and `recover`
  // settles the items the body still held, so that every admitted request is answered.
  template <typename Body, typename Recover>
  void guarded(StageIndex stage, Body&& body, Recover&& recover) noexcept {
    try {
      body();
      return;
    } catch (const std::exception& e) {
      report(stage, e.what());
    } catch (...) {
      report(stage, "unknown exception");
    }
    try {
      recover();
    } catch (...) {
      report(stage, "recovery failed");
      degrade("a stage could not settle the items it held after an exception");
    }
  }

  // Counts and logs (bounded) an exception caught in `stage`; the recovery counts the items it
  // fails in the stage's `failed`.
  void report(StageIndex stage, const char* what) noexcept {
    deps.metrics.internal_errors.fetch_add(1, std::memory_order_relaxed);
    static LogRate rate;
    int64_t more = 0;
    if (rate.allow(more))
      spdlog::error("stage {}: {} ({} similar lines held back)", kStageNames[stage], what, more);
  }

  // State the engine cannot vouch for any more: /health answers 503 until a restart reloads it.
  void degrade(const char* why) noexcept {
    if (!deps.metrics.degraded.exchange(true))
      spdlog::critical("engine degraded: {}; restart it (state is reloaded from PostgreSQL)", why);
  }

  // ---- ingest: bytes -> typed events ----
  void on_ingest(const RequestPtr& r, IngestNode::output_ports_type& p) {
    bool armed = false, forwarded = false;
    guarded(
        kIngest, [&] { ingest_request(r, p, armed, forwarded); },
        [&] {
          if (!armed) {
            m(kIngest).failed.fetch_add(1, std::memory_order_relaxed);
            r->fail(
                RequestError{500, kInternalError, "the engine could not read this request", ""});
          } else if (!forwarded) {
            m(kIngest).failed.fetch_add(settle_pending(*r), std::memory_order_relaxed);
          }
        });
  }

  void ingest_request(const RequestPtr& r, IngestNode::output_ports_type& p, bool& armed,
                      bool& forwarded) {
    const auto t0 = Clock::now();
    StageScope scope(m(kIngest), r->received, t0);
    m(kIngest).backlog.fetch_sub(1, std::memory_order_relaxed);
    const size_t ok =
        stages::ingest(*r, stages::IngestLimits{static_cast<size_t>(deps.config.http_max_batch)});
    if (r->error) {
      m(kIngest).rejected.fetch_add(1, std::memory_order_relaxed);
      m(kIngest).latency.record_us(since_us(t0));
      armed = true;
      r->fail(*r->error);
      return;
    }
    const int64_t n = static_cast<int64_t>(r->items.size());
    // Reconcile the admission estimate with the real item count.
    deps.metrics.events_in_flight.fetch_add(n - r->admitted, std::memory_order_relaxed);
    r->admitted = n;
    m(kIngest).rejected.fetch_add(n - static_cast<int64_t>(ok), std::memory_order_relaxed);
    m(kIngest).processed.fetch_add(static_cast<int64_t>(ok), std::memory_order_relaxed);
    m(kIngest).latency.record_us(since_us(t0));
    armed = true;
    r->arm(ok);  // when ok > 0, those items stay pending: the request cannot complete here
    if (ok == 0) return;
    m(kValidate).backlog.fetch_add(static_cast<int64_t>(ok), std::memory_order_relaxed);
    try {
      std::get<0>(p).try_put(BatchInput{Validated{r, {}}});
    } catch (...) {
      m(kValidate).backlog.fetch_sub(static_cast<int64_t>(ok), std::memory_order_relaxed);
      throw;
    }
    forwarded = true;
  }

  // ---- validate: typed events -> accepted candidates or rejections ----
  void on_validate(const BatchInput& in, ValidateNode::output_ports_type& p) {
    const Validated& v = std::get<Validated>(in);
    bool settled = false;
    guarded(
        kValidate, [&] { validate_request(v, p, settled); },
        [&] {
          if (settled) return;
          const int64_t n = settle_pending(*v.request);
          m(kValidate).failed.fetch_add(n, std::memory_order_relaxed);
          m(kValidate).backlog.fetch_sub(n, std::memory_order_relaxed);
        });
  }

  void validate_request(const Validated& v, ValidateNode::output_ports_type& p, bool& settled) {
    const auto t0 = Clock::now();
    StageScope scope(m(kValidate), v.enqueued, t0);
    Request& r = *v.request;
    auto catalog = deps.catalog.snapshot();
    Validated out{v.request, {}};
    std::vector<std::pair<uint32_t, Verdict>> rejects;
    int64_t candidates = 0;
    for (uint32_t i = 0; i < r.items.size(); ++i) {
      Item& item = r.items[i];
      if (!item.event || item.verdict.status != ItemStatus::pending) continue;
      ++candidates;
      Verdict verdict = stages::validate(*item.event, *catalog);
      if (verdict.status == ItemStatus::rejected)
        rejects.emplace_back(i, std::move(verdict));
      else
        out.accepted.push_back(i);
    }
    m(kValidate).backlog.fetch_sub(candidates, std::memory_order_relaxed);
    m(kValidate).rejected.fetch_add(static_cast<int64_t>(rejects.size()),
                                    std::memory_order_relaxed);
    m(kValidate).processed.fetch_add(static_cast<int64_t>(out.accepted.size()),
                                     std::memory_order_relaxed);
    m(kValidate).latency.record_us(since_us(t0));
    const bool forward = !out.accepted.empty();
    if (forward) m(kBatch).backlog.fetch_add(static_cast<int64_t>(out.accepted.size()));
    // From here on every item is settled by this node or a later one. Rejections are resolved
    // last among our writes to the request's items: resolving can complete it.
    settled = true;
    if (forward) {
      try {
        std::get<0>(p).try_put(BatchInput{out});
      } catch (...) {
        for (uint32_t i : out.accepted) r.resolve(i, Verdict::internal_error());
        m(kValidate).failed.fetch_add(static_cast<int64_t>(out.accepted.size()),
                                      std::memory_order_relaxed);
        for (auto& [i, verdict] : rejects) r.resolve(i, std::move(verdict));
        throw;
      }
    }
    for (auto& [i, verdict] : rejects) r.resolve(i, std::move(verdict));
  }

  // ---- batch: per-quiz buffers, one transaction per quiz batch ----
  void on_batch(const BatchInput& in, BatchNode::output_ports_type& p) {
    size_t added = 0;
    guarded(
        kBatch, [&] { batch_step(in, p, added); },
        [&] {
          const auto* v = std::get_if<Validated>(&in);
          if (!v || added == v->accepted.size()) return;
          const auto n = static_cast<int64_t>(v->accepted.size() - added);
          for (size_t k = added; k < v->accepted.size(); ++k)
            v->request->resolve(v->accepted[k], Verdict::internal_error());
          m(kBatch).failed.fetch_add(n, std::memory_order_relaxed);
          m(kBatch).in_flight.fetch_sub(n, std::memory_order_relaxed);
        });
    guarded(
        kBatch, [&] { arm_timer(); },
        [&] { degrade("the batch stage could not arm its flush timer"); });
  }

  void batch_step(const BatchInput& in, BatchNode::output_ports_type& p, size_t& added) {
    const int64_t now = steady_ms();
    const int64_t wall = now_ms();
    if (const auto* v = std::get_if<Validated>(&in)) {
      const auto n = static_cast<int64_t>(v->accepted.size());
      m(kValidate).oldest_wait_us.store(0, std::memory_order_relaxed);
      m(kBatch).backlog.fetch_sub(n, std::memory_order_relaxed);
      m(kBatch).in_flight.fetch_add(n, std::memory_order_relaxed);
      auto catalog = deps.catalog.snapshot();
      int64_t late = 0;
      for (uint32_t i : v->accepted) {
        const int64_t quiz = v->request->items[i].event->quiz_id;
        ++added;
        if (schedule.refuses(quiz, *catalog)) {  // validated before its finalization began
          ++late;
          v->request->resolve(i, stages::quiz_finalized());
          continue;
        }
        buffers.add(EventRef{v->request, i}, now);
      }
      if (late > 0) {
        m(kBatch).in_flight.fetch_sub(late, std::memory_order_relaxed);
        m(kBatch).rejected.fetch_add(late, std::memory_order_relaxed);
      }
    } else if (const auto* d = std::get_if<QuizDone>(&in)) {
      for (int64_t quiz : d->quiz_ids) buffers.done(quiz);
      --transactions_in_flight;
      events_committing -= d->events;
    } else if (const auto* sc = std::get_if<Schedule>(&in)) {
      schedule.schedule(sc->quiz_id, sc->due_ms);
    } else if (const auto* f = std::get_if<FinalizeDone>(&in)) {
      --transactions_in_flight;
      schedule.finished(f->quiz_id, f->ok, wall);
    } else {
      tick_pending.store(false, std::memory_order_release);
    }
    // Quizzes due for finalization: their buffers flush at once; new answers are refused.
    for (int64_t quiz : schedule.take_due(wall)) buffers.close(quiz);
    // A finalizing quiz whose last batch committed is finalized — before new batches take the
    // free writers, or steady traffic on other quizzes would hold it off for ever. (Not while
    // draining: a restart finalizes it, as the quiz row still says.)
    const bool force = draining.load(std::memory_order_acquire);
    if (!force) {
      for (int64_t quiz : schedule.ready(wall)) {
        if (transactions_in_flight >= max_transactions) break;
        if (!buffers.release_if_idle(quiz)) continue;  // its last batch is still on its way
        start_finalization(quiz, p);
      }
    }
    // At most one transaction per writer thread in flight: while they commit, events keep
    // filling the buffers, so the next transaction is larger exactly when the load is (group
    // commit). A transaction takes the due quizzes' batches up to batch_max_size events.
    while (transactions_in_flight < max_transactions) {
      auto batches = buffers.take_due(now, force, static_cast<size_t>(deps.config.batch_max_size));
      if (batches.empty()) break;
      start_transaction(std::move(batches), p);
    }
    buffered.store(static_cast<int64_t>(buffers.pending_events()) + events_committing,
                   std::memory_order_release);
    m(kBatch).oldest_wait_us.store(buffers.oldest_wait_ms(now) * 1000, std::memory_order_relaxed);
    // A snapshot for operators, ten times a second (and at once when the buffers emptied).
    if (now - largest_at_ms >= 100 || (buffers.pending_events() == 0 && largest_nonempty)) {
      largest_nonempty = buffers.pending_events() > 0;
      largest_at_ms = now;
      auto top = buffers.largest(5);
      MutexLock lock(largest_mu);
      largest = std::move(top);
    }
  }

  void start_transaction(std::vector<stages::QuizBatch> batches, BatchNode::output_ports_type& p) {
    auto job = std::make_shared<CommitJob>();
    job->batches = std::move(batches);
    for (const auto& b : job->batches) {
      job->txn.quiz_ids.push_back(b.quiz_id);
      job->events += static_cast<int64_t>(b.events.size());
    }
    job->txn.batch_key = batch_prefix + "-" + std::to_string(++batch_seq);
    ++transactions_in_flight;
    events_committing += job->events;
    try {
      std::get<0>(p).try_put(job);
    } catch (...) {
      // Not handed on: its quizzes are free again and its items are answered here.
      for (const auto& b : job->batches) {
        buffers.done(b.quiz_id);
        for (const EventRef& ref : b.events)
          ref.request->resolve(ref.index, Verdict::internal_error());
      }
      --transactions_in_flight;
      events_committing -= job->events;
      m(kBatch).in_flight.fetch_sub(job->events, std::memory_order_relaxed);
      m(kBatch).failed.fetch_add(job->events, std::memory_order_relaxed);
      throw;
    }
  }

  // Starts the finalization of `quiz` (its buffer is empty, no batch of it in flight).
  void start_finalization(int64_t quiz, BatchNode::output_ports_type& p) {
    auto job = std::make_shared<CommitJob>();
    auto catalog = deps.catalog.snapshot();
    auto def = catalog->quizzes.find(quiz);
    if (def == catalog->quizzes.end()) {  // finalized meanwhile (or unknown): nothing to do
      schedule.finished(quiz, true, 0);
      return;
    }
    job->finalize = def->second;
    job->txn.quiz_ids = {quiz};
    job->txn.batch_key = "finalize-" + std::to_string(quiz);
    schedule.started(quiz);
    ++transactions_in_flight;
    try {
      std::get<0>(p).try_put(job);
    } catch (...) {
      --transactions_in_flight;
      schedule.finished(quiz, false, now_ms());
      throw;
    }
  }

  // Wakes the batch stage at its next flush or finalization deadline; nothing when no quiz can
  // flush before a transaction finishes (QuizDone wakes it then) or when nothing is due.
  void arm_timer() {
    if (transactions_in_flight >= max_transactions) return;
    const int64_t now = steady_ms();
    int64_t next = buffers.next_due_ms(now);
    const int64_t due_wall = schedule.next_due_ms(now_ms());
    if (due_wall != INT64_MAX)  // the wall-clock due time on the steady clock
      next = std::min(next, now + std::max<int64_t>(0, due_wall - now_ms()));
    if (next != INT64_MAX) timer.arm(Clock::time_point(std::chrono::milliseconds(next)));
  }

  // ---- commit: hands the batch to a database thread; the result re-enters the graph ----
  void on_commit(const CommitJobPtr& job, CommitNode::gateway_type& gw) {
    bool reserved = false, submitted = false;
    guarded(
        kBatch,
        [&] {
          gw.reserve_wait();
          reserved = true;
          deps.commits.submit([this, job, &gw](BatchWriter& writer) noexcept {
            guarded(
                kBatch,
                [&] {
                  if (job->finalize)
                    run_finalize(*job, writer);
                  else
                    run_commit(*job, writer);
                },
                [&] {
                  job->result = Status::internal("the commit job threw");
                  job->finalized = Status::internal("the finalization job threw");
                });
            finish_commit(job, gw);
          });
          submitted = true;
        },
        [&] {
          if (submitted) return;
          job->result = Status::internal("the commit job could not be queued");
          if (reserved)
            finish_commit(job, gw);
          else
            settle_unfinished(*job);
        });
  }

  // Hands a finished transaction back to the graph (the score stage) and releases its wait.
  void finish_commit(const CommitJobPtr& job, CommitNode::gateway_type& gw) noexcept {
    guarded(
        kBatch, [&] { gw.try_put(job); },
        [&] {
          job->result = Status::internal("the finished transaction could not reach score");
          settle_unfinished(*job);
        });
    gw.release_wait();
  }

  // A transaction that cannot reach the score stage: its items are answered and its quizzes
  // freed here. The writer may have committed it, so memory may now lag the database.
  void settle_unfinished(const CommitJob& job) {
    degrade("a transaction could not reach the score stage");
    if (job.finalize) {
      batch.try_put(BatchInput{FinalizeDone{job.finalize->quiz_id, false}});
      return;
    }
    answer(job);
    m(kBatch).in_flight.fetch_sub(job.events, std::memory_order_relaxed);
    m(kBatch).failed.fetch_add(job.events, std::memory_order_relaxed);
    batch.try_put(BatchInput{QuizDone{job.txn.quiz_ids, job.events}});
  }

  // Runs on a database thread.
  void run_commit(CommitJob& job, BatchWriter& writer) {
    const auto t0 = Clock::now();
    if (deps.metrics.degraded.load(std::memory_order_acquire)) {
      // Memory may differ from PostgreSQL: writing absolute standings from it could corrupt the
      // stored ones. Nothing more is committed until a restart reloads the state.
      job.result = Status::unavailable("the engine is degraded; restart it");
      job.commit_us = since_us(t0);
      return;
    }
    std::vector<const AnswerEvent*> in_order;  // the batches' events, batch by batch
    in_order.reserve(static_cast<size_t>(job.events));
    for (const auto& b : job.batches)
      for (const EventRef& ref : b.events) in_order.push_back(&ref.event());
    job.distinct = stages::dedupe(in_order);  // points at the events, not into in_order
    job.txn.events = job.distinct.events;
    const stages::RankPolicy policy{static_cast<size_t>(deps.config.notify_top_n),
                                    deps.config.notify_coalesce_ms, now_ms()};
    commit_with_reloads(job, writer, policy);
    // The database refused some row's data: the events it refuses alone are taken out (their
    // items rejected) and the rest committed without them; nothing is dead-lettered for an
    // unreachable or failing server, only for data (docs/error-policy.md).
    if (!job.result.ok() && job.result.status().code() == StatusCode::invalid) {
      static LogRate rate;
      int64_t more = 0;
      auto refused = writer.refused_events(job.txn.events);
      if (!refused.ok() || refused->empty()) {
        if (rate.allow(more))
          spdlog::error(
              "batch {}: the database refused its data ({}) but no event alone: {} ({} similar "
              "lines held back)",
              job.txn.batch_key, job.result.status().message(),
              refused.ok() ? "the fault is in derived rows" : refused.status().to_string(), more);
      } else {
        std::vector<size_t> slots;
        for (const RefusedEvent& r : *refused) {
          const AnswerEvent& e = *job.txn.events[r.index];
          job.refused_why.emplace(std::pair{e.quiz_id, e.event_id}, r.reason);
          slots.push_back(r.index);
        }
        job.refused = static_cast<int64_t>(refused->size());
        if (rate.allow(more))
          spdlog::warn(
              "batch {}: the database refused {} of its {} events ({}); committing the others "
              "({} similar lines held back)",
              job.txn.batch_key, refused->size(), job.txn.events.size(), refused->front().reason,
              more);
        job.distinct = stages::without(in_order, job.distinct, slots);
        job.txn.events = job.distinct.events;
        if (job.txn.events.empty())
          job.result = Committed{};  // nothing left to store
        else
          commit_with_reloads(job, writer, policy);
      }
    }
    job.commit_us = since_us(t0);
  }

  // One commit of the job's transaction. A stale quiz (its standings rebuilt by a replay since
  // they were loaded) is reloaded and the transaction derived and tried again; nothing of the
  // stale attempt was stored. A replay rebuilds quiz by quiz, so a transaction of n quizzes may
  // meet each rebuilt once.
  void commit_with_reloads(CommitJob& job, BatchWriter& writer, const stages::RankPolicy& policy) {
    const int stale_attempts = static_cast<int>(job.txn.quiz_ids.size()) + 2;
    for (int attempt = 1; attempt <= stale_attempts; ++attempt) {
      // A quiz's standings are loaded from PostgreSQL on its first batch after a start.
      job.txn.versions.clear();
      // Read now, while this transaction's events are still unsettled: the offsets stored are
      // at most theirs, whatever commits first.
      if (deps.consumer && deps.consumer->offsets) job.txn.offsets = deps.consumer->offsets();
      for (int64_t quiz : job.txn.quiz_ids) {
        const Status loaded =
            deps.standings.ensure_loaded(quiz, [&] { return deps.store.load_counted(quiz); });
        if (!loaded.ok()) {
          job.result = loaded;
          return;
        }
        job.txn.versions.push_back(deps.standings.version(quiz));
      }
      job.result = writer.commit(job.txn, [&](const std::vector<bool>& inserted) {
        job.changes = stages::derive(job.distinct, inserted, deps.standings, policy);
        job.messages = stages::batch_notifications(job.distinct, job.changes, job.txn.batch_key);
        DerivedRows rows = stages::rows_of(job.changes);
        if (deps.config.outbox) rows.outbox = job.messages;
        return rows;
      });
      if (job.result.ok() || job.result.status().code() != StatusCode::stale) break;
      spdlog::info("batch {}: {}; reloading its quizzes", job.txn.batch_key,
                   job.result.status().message());
      for (int64_t quiz : job.txn.quiz_ids) deps.standings.erase(quiz);
      deps.metrics.batches.stale_reloads.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // Runs on a database thread: one quiz's finalization transaction.
  void run_finalize(CommitJob& job, BatchWriter& writer) {
    const auto t0 = Clock::now();
    if (deps.metrics.degraded.load(std::memory_order_acquire)) {
      job.finalized = Status::unavailable("the engine is degraded; restart it");
      return;
    }
    const QuizDef& quiz = *job.finalize;
    job.finalized = writer.finalize(
        quiz.quiz_id,
        [&](std::vector<StandingRow> stored) {
          return stages::final_results(quiz, std::move(stored));
        },
        deps.config.outbox);
    job.commit_us = since_us(t0);
  }

  // ---- score: apply committed changes, answer the items, free the quizzes ----
  void on_score(const CommitJobPtr& job, ScoreNode::output_ports_type& p) {
    if (job->finalize) return on_finalized(job, p);
    const auto t0 = Clock::now();
    StageScope scope(m(kScore), job->enqueued, t0);
    const int64_t n = job->events;
    record_commit(*job);
    auto chunk = std::make_shared<NotifyChunk>();
    if (job->result.ok()) {
      guarded(
          kScore,
          [&] {
            stages::apply(deps.standings, job->changes);
            if (!job->messages.empty()) {
              chunk->groups.push_back(
                  OutboxGroup{job->result->outbox_id, std::move(job->messages)});
            }
          },
          [&] { degrade("committed changes could not be applied to the in-memory standings"); });
    }
    m(kBatch).in_flight.fetch_sub(n, std::memory_order_relaxed);
    m(kBatch).latency.record_us(job->commit_us);
    // Counted before the answers go out, so a client reading stats after its response sees them.
    m(kScore).processed.fetch_add(job->result.ok() ? n : 0, std::memory_order_relaxed);
    // Free the quizzes before answering, so their next batches can start.
    guarded(
        kScore,
        [&] {
          std::get<1>(p).try_put(BatchInput{QuizDone{job->txn.quiz_ids, n}});
        },
        [&] { degrade("a finished transaction could not free its quizzes"); });
    answer(*job);
    m(kScore).latency.record_us(since_us(t0));
    send_notifications(chunk, p);
  }

  void send_notifications(const NotifyChunkPtr& chunk, ScoreNode::output_ports_type& p) {
    if (chunk->groups.empty()) return;
    const int64_t nm = chunk->messages();
    m(kNotify).backlog.fetch_add(nm, std::memory_order_relaxed);
    guarded(
        kNotify, [&] { std::get<0>(p).try_put(chunk); },
        [&] {
          // Stored ones stay in the outbox: the relay's sweep sends them.
          m(kNotify).backlog.fetch_sub(nm, std::memory_order_relaxed);
          m(kNotify).failed.fetch_add(nm, std::memory_order_relaxed);
        });
  }

  // A finalization finished: the quiz leaves memory; its notifications go out.
  void on_finalized(const CommitJobPtr& job, ScoreNode::output_ports_type& p) {
    const int64_t quiz = job->finalize->quiz_id;
    auto& lm = deps.metrics.lifecycle;
    const bool ok = job->finalized.ok();
    if (ok) deps.metrics.batches.last_success_at_ms.store(steady_ms(), std::memory_order_relaxed);
    auto chunk = std::make_shared<NotifyChunk>();
    guarded(
        kScore,
        [&] {
          if (!ok) {
            lm.finalize_failures.fetch_add(1, std::memory_order_relaxed);
            static LogRate rate;
            if (int64_t more = 0; rate.allow(more))
              spdlog::error(
                  "finalizing quiz {} failed: {}; its answers stay refused; retried later ({} "
                  "similar lines held back)",
                  quiz, job->finalized.status().to_string(), more);
            return;
          }
          Finalized& f = *job->finalized;
          deps.catalog.set_state(quiz, QuizState::finalized);
          deps.standings.erase(quiz);
          if (f.already) {
            spdlog::info("quiz {} was finalized already (by another engine or run)", quiz);
            return;
          }
          lm.finalizations.fetch_add(1, std::memory_order_relaxed);
          lm.rewards_granted.fetch_add(f.rewards, std::memory_order_relaxed);
          spdlog::info("quiz {} finalized: {} players, {} rewards granted ({} ms)", quiz, f.players,
                       f.rewards, job->commit_us / 1000);
          for (OutboxGroup& g : f.outbox) chunk->groups.push_back(std::move(g));
        },
        [&] { degrade("a finalized quiz could not leave memory"); });
    guarded(
        kScore,
        [&] {
          std::get<1>(p).try_put(BatchInput{FinalizeDone{quiz, ok}});
        },
        [&] { degrade("a finished finalization could not free its quiz"); });
    send_notifications(chunk, p);
  }

  void record_commit(const CommitJob& job) {
    auto& bm = deps.metrics.batches;
    const auto quizzes = job.txn.quiz_ids.size();
    const int64_t first = job.txn.quiz_ids.empty() ? 0 : job.txn.quiz_ids.front();
    if (job.commit_us / 1000 >= deps.config.slow_commit_ms)
      spdlog::warn("slow commit: batch {} ({} quizzes, first {}; {} events) took {} ms",
                   job.txn.batch_key, quizzes, first, job.events, job.commit_us / 1000);
    if (!job.result.ok()) {
      if (job.result.status().code() == StatusCode::in_doubt)  // it may have committed
        degrade("a COMMIT's outcome could not be resolved");
      bm.failed.fetch_add(1, std::memory_order_relaxed);
      m(kBatch).failed.fetch_add(job.events, std::memory_order_relaxed);
      static LogRate rate;
      int64_t more = 0;
      if (rate.allow(more))
        spdlog::error("batch {} ({} quizzes, first {}; {} events) failed: {} ({} more held back)",
                      job.txn.batch_key, quizzes, first, job.events,
                      job.result.status().to_string(), more);
      return;
    }
    const Committed& c = *job.result;
    const int64_t refused = static_cast<int64_t>(
        std::count(job.distinct.slot_of.begin(), job.distinct.slot_of.end(), stages::kRefusedSlot));
    m(kBatch).rejected.fetch_add(refused, std::memory_order_relaxed);
    if (job.txn.events.empty()) return;  // every event refused: no transaction committed
    bm.committed.fetch_add(1, std::memory_order_relaxed);
    bm.last_success_at_ms.store(steady_ms(), std::memory_order_relaxed);
    int64_t fresh = 0;
    for (bool b : c.inserted) fresh += b ? 1 : 0;
    bm.rows.fetch_add(fresh, std::memory_order_relaxed);  // new rows in the event log
    bm.last_commit_ms.store(job.commit_us / 1000, std::memory_order_relaxed);
    bm.commit.record_us(job.commit_us);
    m(kBatch).processed.fetch_add(job.events - refused, std::memory_order_relaxed);
  }

  // Resolves every event of the transaction (stages/verdict.h); the last item of a request sends
  // its response. Does not throw (the completion catches).
  void answer(const CommitJob& job) noexcept {
    const Status st = job.result.status();
    static const std::vector<bool> kNone;
    const std::vector<bool>& inserted = job.result.ok() ? job.result->inserted : kNone;
    size_t i = 0;
    for (const auto& b : job.batches) {
      for (const EventRef& ref : b.events) {
        const int32_t slot = i < job.distinct.slot_of.size() ? job.distinct.slot_of[i] : -1;
        ++i;
        const std::string* why = nullptr;
        if (slot == stages::kRefusedSlot) {
          auto it = job.refused_why.find(std::pair{ref.event().quiz_id, ref.event().event_id});
          if (it != job.refused_why.end()) why = &it->second;
        }
        ref.request->resolve(ref.index,
                             stages::commit_verdict(st, slot, inserted, why ? *why : ""));
      }
    }
  }

  // ---- notify: hand notifications to the producer (never waits: the producer queues) ----
  void on_notify(const NotifyChunkPtr& c) {
    const int64_t n = c->messages();
    guarded(
        kNotify,
        [&] {
          const auto t0 = Clock::now();
          StageScope scope(m(kNotify), c->enqueued, t0);
          m(kNotify).backlog.fetch_sub(n, std::memory_order_relaxed);
          size_t refused = 0;
          for (OutboxGroup& g : c->groups) refused += deps.relay.publish(g);
          m(kNotify).processed.fetch_add(n - static_cast<int64_t>(refused),
                                         std::memory_order_relaxed);
          m(kNotify).failed.fetch_add(static_cast<int64_t>(refused), std::memory_order_relaxed);
          m(kNotify).latency.record_us(since_us(t0));
        },
        [&] { m(kNotify).failed.fetch_add(n, std::memory_order_relaxed); });
  }

  GraphDeps deps;
  flow::graph g;
  stages::BatchBuffers buffers;       // used only by the serial batch node
  stages::FinalizeSchedule schedule;  // used only by the serial batch node
  uint64_t batch_seq = 0;             // used only by the serial batch node
  int transactions_in_flight = 0;     // used only by the serial batch node
  int64_t events_committing = 0;      // used only by the serial batch node
  const int max_transactions = std::max(1, deps.config.db_writers);
  std::string batch_prefix;
  IngestNode ingest;
  ValidateNode validate;
  BatchNode batch;
  CommitNode commit;
  ScoreNode score;
  NotifyNode notify;
  std::atomic<bool> tick_pending{false};
  std::atomic<bool> draining{false};
  std::atomic<int64_t> buffered{0};
  int64_t largest_at_ms = 0;      // used only by the serial batch node
  bool largest_nonempty = false;  // used only by the serial batch node
  mutable Mutex largest_mu;
  std::vector<std::pair<int64_t, int64_t>> largest QF_GUARDED_BY(largest_mu);
  DeadlineTimer timer;  // last: its thread starts once everything it may touch exists
  bool drained = false;
};

// The graph's own task arena. oneTBB's default arena keeps a slot for the thread that created
// the graph — here the main thread, which only waits for signals — so on 2 cores a single worker
// ran every node: while score answered a batch (several ms), the batch node could not start the
// next transaction. This arena has no slot for external threads and `graph_threads` workers
// (the global limit allows that many, plus the external threads that hand work in).
struct Graph::Arena {
  explicit Arena(int threads)
      : limit(tbb::global_control::max_allowed_parallelism,
              static_cast<size_t>(std::max(threads, 1)) + 1),
        arena(std::max(threads, 1), 0) {}
  tbb::global_control limit;
  tbb::task_arena arena;
};

Graph::Graph(GraphDeps deps) : arena_(std::make_unique<Arena>(deps.config.graph_threads)) {
  // The graph attaches to the arena it is built in.
  arena_->arena.execute([&] { impl_ = std::make_unique<Impl>(deps); });
}

Graph::~Graph() {
  drain();
  arena_->arena.execute([&] { impl_.reset(); });
}

void Graph::put(RequestPtr r) {
  impl_->m(kIngest).backlog.fetch_add(1, std::memory_order_relaxed);
  impl_->ingest.try_put(std::move(r));
}

void Graph::drain() {
  if (impl_->drained) return;
  impl_->draining.store(true, std::memory_order_release);
  // Force flushes until every admitted request is answered and nothing is buffered. Polls with
  // sleeps (only while draining): wait_for_all() would spin a core that the database may need.
  const auto& in_flight = impl_->deps.metrics.events_in_flight;
  auto report_at = Clock::now() + std::chrono::seconds(1);
  while (in_flight.load(std::memory_order_acquire) > 0 ||
         impl_->buffered.load(std::memory_order_acquire) > 0) {
    impl_->send_tick();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (Clock::now() >= report_at) {  // a slow drain says what it waits for
      report_at += std::chrono::seconds(1);
      const auto& st = impl_->deps.metrics.stages;
      auto load = [](const std::atomic<int64_t>& a) { return a.load(std::memory_order_relaxed); };
      spdlog::warn(
          "drain: waiting for {} admitted events; backlog ingest {} validate {} batch {}; "
          "batch stage holds {} (buffered or committing), {} commit jobs queued",
          load(in_flight), load(st[kIngest].backlog), load(st[kValidate].backlog),
          load(st[kBatch].backlog), load(st[kBatch].in_flight), impl_->deps.commits.queued());
    }
  }
  impl_->timer.stop();
  impl_->g.wait_for_all();  // what is left (notifications) is quick
  impl_->drained = true;
}

void Graph::schedule_finalization(int64_t quiz_id, int64_t due_ms) {
  impl_->batch.try_put(BatchInput{Schedule{quiz_id, due_ms}});
}

int64_t Graph::pending_events() const { return impl_->buffered.load(std::memory_order_acquire); }

std::vector<std::pair<int64_t, int64_t>> Graph::largest_pending() const {
  MutexLock lock(impl_->largest_mu);
  return impl_->largest;
}

}  // namespace quizflow
