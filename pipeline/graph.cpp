#include "pipeline/graph.h"

#include <oneapi/tbb/flow_graph.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <random>
#include <unordered_map>
#include <variant>

#include "stages/batch.h"
#include "stages/ingest.h"
#include "stages/notify.h"
#include "stages/validate.h"

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
using BatchInput = std::variant<Validated, Tick, QuizDone>;

// One batch transaction on its way through the commit and score stages: the batches of one or
// more quizzes (each quiz's batch whole; several small quizzes share a transaction).
struct CommitJob {
  Clock::time_point enqueued = Clock::now();
  std::vector<stages::QuizBatch> batches;
  std::vector<int64_t> quiz_ids;           // parallel to batches
  int64_t events = 0;                      // over all batches
  std::vector<const AnswerEvent*> unique;  // events with distinct event_ids, first occurrence
  std::vector<uint32_t> unique_batch;      // per unique event: index into batches
  std::vector<int32_t> unique_of;  // per event, batches in order: index into unique, -1 = repeat
  std::string batch_key;
  CommitOutcome outcome;
  std::vector<stages::Proposal> proposals;  // parallel to batches
  std::vector<size_t> counted;              // indexes into unique that became the counted answer
  int64_t commit_us = 0;
};
using CommitJobPtr = std::shared_ptr<CommitJob>;

struct NotifyChunk {
  std::vector<Notification> messages;
  Clock::time_point enqueued = Clock::now();
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
        notify(g, flow::serial, [this](const NotifyChunkPtr& c) {
          on_notify(c);
          return flow::continue_msg();
        }) {
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

    const int tick_ms = std::max(1, d.config.batch_max_delay_ms / 2);
    ticker = std::thread([this, tick_ms] {
      while (!stop_ticker.load(std::memory_order_acquire)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(tick_ms));
        send_tick();
      }
    });
  }

  StageMetrics& m(StageIndex i) { return deps.metrics.stages[i]; }

  void send_tick() {
    if (!tick_pending.exchange(true, std::memory_order_acq_rel)) batch.try_put(BatchInput{Tick{}});
  }

  // ---- ingest: bytes -> typed events ----
  void on_ingest(const RequestPtr& r, IngestNode::output_ports_type& p) {
    const auto t0 = Clock::now();
    StageScope scope(m(kIngest), r->received, t0);
    m(kIngest).backlog.fetch_sub(1, std::memory_order_relaxed);
    const size_t ok =
        stages::ingest(*r, stages::IngestLimits{static_cast<size_t>(deps.config.http_max_batch)});
    if (r->error) {
      m(kIngest).rejected.fetch_add(1, std::memory_order_relaxed);
      m(kIngest).latency.record_us(since_us(t0));
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
    if (ok == 0) {
      r->arm(0);
      return;
    }
    r->arm(ok);  // ok > 0 items stay pending: the request cannot complete here
    m(kValidate).backlog.fetch_add(static_cast<int64_t>(ok), std::memory_order_relaxed);
    std::get<0>(p).try_put(BatchInput{Validated{r, {}}});
  }

  // ---- validate: typed events -> accepted candidates or rejections ----
  void on_validate(const BatchInput& in, ValidateNode::output_ports_type& p) {
    const auto t0 = Clock::now();
    const Validated& v = std::get<Validated>(in);
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
    // Resolve rejections last among our writes to the request's items: resolving can complete it.
    for (auto& [i, verdict] : rejects) r.resolve(i, std::move(verdict));
    if (forward) std::get<0>(p).try_put(BatchInput{std::move(out)});
  }

  // ---- batch: per-quiz buffers, one transaction per quiz batch ----
  void on_batch(const BatchInput& in, BatchNode::output_ports_type& p) {
    const int64_t now =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
            .count();
    if (const auto* v = std::get_if<Validated>(&in)) {
      const auto n = static_cast<int64_t>(v->accepted.size());
      deps.metrics.stages[kValidate].oldest_wait_us.store(0, std::memory_order_relaxed);
      m(kBatch).backlog.fetch_sub(n, std::memory_order_relaxed);
      m(kBatch).in_flight.fetch_add(n, std::memory_order_relaxed);
      for (uint32_t i : v->accepted) buffers.add(EventRef{v->request, i}, now);
    } else if (const auto* d = std::get_if<QuizDone>(&in)) {
      for (int64_t quiz : d->quiz_ids) buffers.done(quiz);
      --transactions_in_flight;
      events_committing -= d->events;
    } else {
      tick_pending.store(false, std::memory_order_release);
    }
    // At most one transaction per writer thread in flight: while they commit, events keep
    // filling the buffers, so the next transaction is larger exactly when the load is (group
    // commit). A transaction takes the due quizzes' batches up to batch_max_size events.
    const bool force = draining.load(std::memory_order_acquire);
    while (transactions_in_flight < max_transactions) {
      auto batches = buffers.take_due(now, force, static_cast<size_t>(deps.config.batch_max_size));
      if (batches.empty()) break;
      auto job = std::make_shared<CommitJob>();
      job->batches = std::move(batches);
      for (const auto& b : job->batches) {
        job->quiz_ids.push_back(b.quiz_id);
        job->events += static_cast<int64_t>(b.events.size());
      }
      job->batch_key = batch_prefix + "-" + std::to_string(++batch_seq);
      ++transactions_in_flight;
      events_committing += job->events;
      std::get<0>(p).try_put(job);
    }
    buffered.store(static_cast<int64_t>(buffers.pending_events()) + events_committing,
                   std::memory_order_release);
    m(kBatch).oldest_wait_us.store(buffers.oldest_wait_ms(now) * 1000, std::memory_order_relaxed);
    // A snapshot for operators, ten times a second (and at once when the buffers emptied).
    if (now - largest_at_ms >= 100 || (buffers.pending_events() == 0 && largest_nonempty)) {
      largest_nonempty = buffers.pending_events() > 0;
      largest_at_ms = now;
      auto top = buffers.largest(5);
      std::lock_guard lock(largest_mu);
      largest = std::move(top);
    }
  }

  // ---- commit: hands the batch to a database thread; the result re-enters the graph ----
  void on_commit(const CommitJobPtr& job, CommitNode::gateway_type& gw) {
    gw.reserve_wait();
    deps.commits.submit([this, job, &gw](BatchWriter& writer) {
      run_commit(*job, writer);
      gw.try_put(job);
      gw.release_wait();
    });
  }

  void run_commit(CommitJob& job, BatchWriter& writer) {
    const auto t0 = Clock::now();
    // Duplicates inside the transaction are removed first (one statement must not touch a key
    // twice).
    std::unordered_map<std::string_view, int32_t> first;
    first.reserve(static_cast<size_t>(job.events));
    job.unique_of.reserve(static_cast<size_t>(job.events));
    for (uint32_t bi = 0; bi < job.batches.size(); ++bi) {
      for (const auto& ref : job.batches[bi].events) {
        const AnswerEvent& e = ref.event();
        auto [it, fresh] = first.try_emplace(e.event_id, static_cast<int32_t>(job.unique.size()));
        if (fresh) {
          job.unique.push_back(&e);
          job.unique_batch.push_back(bi);
          job.unique_of.push_back(it->second);
        } else {
          job.unique_of.push_back(-1);
        }
      }
    }
    job.outcome =
        writer.commit(job.quiz_ids, job.batch_key, job.unique,
                      [&](const std::vector<bool>& inserted) { return derive(job, inserted); });
    job.commit_us = since_us(t0);
  }

  // The counted answers and standings the new events of each quiz in `job` make (spec §4).
  DerivedRows derive(CommitJob& job, const std::vector<bool>& inserted) {
    const size_t nb = job.batches.size();
    std::vector<std::vector<const AnswerEvent*>> fresh(nb);
    std::vector<std::vector<size_t>> fresh_index(nb);
    for (size_t i = 0; i < job.unique.size(); ++i) {
      if (!inserted[i]) continue;
      fresh[job.unique_batch[i]].push_back(job.unique[i]);
      fresh_index[job.unique_batch[i]].push_back(i);
    }
    DerivedRows rows;
    job.proposals.assign(nb, stages::Proposal{});
    job.counted.clear();
    for (size_t b = 0; b < nb; ++b) {
      const int64_t quiz = job.quiz_ids[b];
      if (fresh[b].empty()) continue;
      stages::Proposal& pr = job.proposals[b];
      pr = deps.standings.read(quiz, [&](const stages::QuizStandings* s) {
        return s ? s->propose(quiz, fresh[b]) : stages::QuizStandings().propose(quiz, fresh[b]);
      });
      for (size_t k : pr.newly_counted) job.counted.push_back(fresh_index[b][k]);
      rows.counted.insert(rows.counted.end(), pr.counted.begin(), pr.counted.end());
      rows.standings.insert(rows.standings.end(), pr.standings.begin(), pr.standings.end());
    }
    return rows;
  }

  // ---- score: apply committed changes, answer the items, free the quiz ----
  void on_score(const CommitJobPtr& job, ScoreNode::output_ports_type& p) {
    const auto t0 = Clock::now();
    StageScope scope(m(kScore), job->enqueued, t0);
    const int64_t n = job->events;
    const size_t quizzes = job->quiz_ids.size();
    if (job->commit_us / 1000 >= deps.config.slow_commit_ms)
      spdlog::warn("slow commit: batch {} ({} quizzes, first {}; {} events) took {} ms",
                   job->batch_key, quizzes, job->quiz_ids.front(), n, job->commit_us / 1000);
    auto& bm = deps.metrics.batches;
    auto chunk = std::make_shared<NotifyChunk>();
    if (job->outcome.ok) {
      bm.committed.fetch_add(1, std::memory_order_relaxed);
      int64_t fresh = 0;
      for (bool b : job->outcome.inserted) fresh += b ? 1 : 0;
      bm.rows.fetch_add(fresh, std::memory_order_relaxed);  // new rows in the event log
      bm.last_commit_ms.store(job->commit_us / 1000, std::memory_order_relaxed);
      bm.commit.record_us(job->commit_us);
      for (const auto& pr : job->proposals) {
        if (pr.counted.empty() && pr.standings.empty()) continue;
        deps.standings.write(pr.quiz_id, [&](stages::QuizStandings& s) { s.apply(pr); });
      }
      chunk->messages.reserve(job->counted.size());
      for (size_t k : job->counted)
        chunk->messages.push_back(stages::answer_result(*job->unique[k]));
      m(kBatch).processed.fetch_add(n, std::memory_order_relaxed);
    } else {
      bm.failed.fetch_add(1, std::memory_order_relaxed);
      m(kBatch).failed.fetch_add(n, std::memory_order_relaxed);
      spdlog::error("batch {} ({} quizzes, first {}; {} events) failed: {}", job->batch_key,
                    quizzes, job->quiz_ids.front(), n, job->outcome.error);
    }
    m(kBatch).in_flight.fetch_sub(n, std::memory_order_relaxed);
    m(kBatch).latency.record_us(job->commit_us);
    // Counted before the answers go out, so a client reading stats after its response sees them.
    m(kScore).processed.fetch_add(job->outcome.ok ? n : 0, std::memory_order_relaxed);
    // Free the quizzes before answering, so their next batches can start.
    std::get<1>(p).try_put(BatchInput{QuizDone{job->quiz_ids, n}});
    size_t i = 0;
    for (const auto& batch : job->batches) {
      for (const EventRef& ref : batch.events) {
        const int32_t u = job->unique_of[i++];
        Verdict v;
        if (!job->outcome.ok) {
          v = Verdict::reject("storage_unavailable",
                              "the answer could not be stored; retry the request", "");
        } else if (u < 0 || !job->outcome.inserted[static_cast<size_t>(u)]) {
          v.status = ItemStatus::duplicate;
        } else {
          v.status = ItemStatus::accepted;
        }
        ref.request->resolve(ref.index, std::move(v));
      }
    }
    m(kScore).latency.record_us(since_us(t0));
    if (!chunk->messages.empty()) {
      m(kNotify).backlog.fetch_add(static_cast<int64_t>(chunk->messages.size()));
      std::get<0>(p).try_put(chunk);
    }
  }

  // ---- notify: hand notifications to the producer ----
  void on_notify(const NotifyChunkPtr& c) {
    const auto t0 = Clock::now();
    StageScope scope(m(kNotify), c->enqueued, t0);
    const auto n = static_cast<int64_t>(c->messages.size());
    m(kNotify).backlog.fetch_sub(n, std::memory_order_relaxed);
    const size_t refused = deps.sink.publish(c->messages);
    m(kNotify).processed.fetch_add(n - static_cast<int64_t>(refused), std::memory_order_relaxed);
    m(kNotify).failed.fetch_add(static_cast<int64_t>(refused), std::memory_order_relaxed);
    m(kNotify).latency.record_us(since_us(t0));
  }

  GraphDeps deps;
  flow::graph g;
  stages::BatchBuffers buffers;    // used only by the serial batch node
  uint64_t batch_seq = 0;          // used only by the serial batch node
  int transactions_in_flight = 0;  // used only by the serial batch node
  int64_t events_committing = 0;   // used only by the serial batch node
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
  std::atomic<bool> stop_ticker{false};
  std::atomic<int64_t> buffered{0};
  int64_t largest_at_ms = 0;      // used only by the serial batch node
  bool largest_nonempty = false;  // used only by the serial batch node
  mutable std::mutex largest_mu;
  std::vector<std::pair<int64_t, int64_t>> largest;  // guarded by largest_mu
  std::thread ticker;
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
  // sleeps: wait_for_all() would spin a core that the database may need.
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
  impl_->stop_ticker.store(true, std::memory_order_release);
  if (impl_->ticker.joinable()) impl_->ticker.join();
  impl_->send_tick();
  impl_->g.wait_for_all();  // what is left (notifications) is quick
  impl_->drained = true;
}

int64_t Graph::pending_events() const { return impl_->buffered.load(std::memory_order_acquire); }

std::vector<std::pair<int64_t, int64_t>> Graph::largest_pending() const {
  std::lock_guard lock(impl_->largest_mu);
  return impl_->largest;
}

}  // namespace quizflow
