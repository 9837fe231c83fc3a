#include "pipeline/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <unordered_map>

#include "core/log_rate.h"
#include "core/time_util.h"
#include "pipeline/commit_pool.h"
#include "pipeline/graph.h"
#include "pipeline/outbox_relay.h"
#include "pipeline/stats.h"
#include "stages/admission.h"
#include "stages/finalize.h"
#include "stages/ingest.h"
#include "stages/score.h"

namespace quizflow {

Engine::Engine(Config config, std::unique_ptr<Store> store, std::unique_ptr<NotificationSink> sink)
    : config_(std::move(config)),
      store_(std::move(store)),
      sink_(std::move(sink)),
      standings_(std::make_unique<stages::StandingsBook>()) {}

Engine::~Engine() { stop(); }

Status Engine::start() {
  MutexLock lock(life_mu_);
  if (running_.load()) return Status();
  if (Status s = store_->migrate(); !s.ok()) return s;
  // Only live quizzes' definitions: memory and start-up do not grow with finalized history.
  // Their standings are loaded on first use.
  auto quizzes = store_->load_quizzes();
  if (!quizzes.ok()) return quizzes.status();
  std::vector<std::pair<int64_t, int64_t>> due;  // (quiz, finalization due)
  for (const QuizRecord& r : quizzes->live) {
    due.emplace_back(r.def.quiz_id, r.state == QuizState::closed
                                        ? 0
                                        : stages::finalize_due_ms(r.def, config_.close_grace_ms));
  }
  spdlog::info("loaded {} live quizzes ({} finalized ones stay in PostgreSQL)",
               quizzes->live.size(), quizzes->finalized.size());
  catalog_.replace_all(std::move(quizzes->live), std::move(quizzes->finalized));
  standings_->clear();  // a restart reloads what PostgreSQL holds
  auto pool = CommitPool::open(*store_, config_.db_writers, metrics_.batches);
  if (!pool.ok()) return pool.status();
  commits_ = std::move(pool).value();
  relay_ = std::make_unique<OutboxRelay>(config_, *store_, *sink_, metrics_.lifecycle);
  relay_->start();
  {
    WriterLock glock(graph_mu_);
    graph_ = std::make_unique<Graph>(GraphDeps{config_, catalog_, *standings_, *store_, *commits_,
                                               *relay_, metrics_, &consumer_});
    // Quizzes due while the engine was down are finalized at once.
    for (const auto& [quiz, at] : due) graph_->schedule_finalization(quiz, at);
  }
  started_ms_.store(now_ms());
  {
    MutexLock hl(health_mu_);
    health_.running = true;
    health_.database_ok = true;
    stop_monitor_ = false;
  }
  draining_.store(false, std::memory_order_release);
  running_.store(true, std::memory_order_release);
  gate_.open();
  monitor_ = std::thread([this] { monitor_loop(); });
  return Status();
}

void Engine::stop() {
  MutexLock lock(life_mu_);
  if (!running_.load()) return;
  begin_drain();
  // From here submit() refuses; callers already inside have handed their request over.
  gate_.close();
  const auto t0 = std::chrono::steady_clock::now();
  graph_->drain();
  commits_->stop();
  sink_->flush(5000);
  relay_->stop();  // rows delivered by now are marked sent; the rest wait for the next run
  running_.store(false, std::memory_order_release);
  {
    MutexLock hl(health_mu_);
    stop_monitor_ = true;
    health_cv_.notify_all();
  }
  if (monitor_.joinable()) monitor_.join();
  {
    WriterLock glock(graph_mu_);
    graph_.reset();
  }
  commits_.reset();
  relay_.reset();
  spdlog::info("engine drained in {} ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::steady_clock::now() - t0)
                                              .count());
}

SubmitResult Engine::submit(std::string body, Request::DoneFn done) {
  const GatePass pass(gate_);
  if (!pass.entered()) return SubmitResult::stopped;
  const int64_t estimate = stages::admission_estimate(body.size());
  const int64_t in_flight = metrics_.events_in_flight.load(std::memory_order_relaxed);
  if (!stages::admits(in_flight, estimate, config_.max_in_flight_events)) {
    metrics_.http_overloaded.fetch_add(1, std::memory_order_relaxed);
    return SubmitResult::overloaded;
  }
  metrics_.events_in_flight.fetch_add(estimate, std::memory_order_relaxed);
  // The completion callback: releases the budget, then answers; an exception from the answer
  // is logged (bounded) and counted, never thrown into the graph (docs/error-policy.md).
  auto release = [this, done = std::move(done)](Request& r) {
    metrics_.events_in_flight.fetch_sub(r.admitted, std::memory_order_relaxed);
    if (!done) return;
    try {
      done(r);
    } catch (const std::exception& e) {
      metrics_.internal_errors.fetch_add(1, std::memory_order_relaxed);
      static LogRate rate;
      if (int64_t more = 0; rate.allow(more))
        spdlog::error("answer completion failed: {} ({} more held back)", e.what(), more);
    } catch (...) {
      metrics_.internal_errors.fetch_add(1, std::memory_order_relaxed);
    }
  };
  auto r = std::make_shared<Request>(std::move(body), std::move(release));
  r->admitted = estimate;
  graph_->put(std::move(r));
  return SubmitResult::admitted;
}

Item decode_answer(std::string_view json) { return stages::decode_answer_json(json); }

size_t decode_request(Request& r, size_t max_batch) {
  return stages::ingest(r, stages::IngestLimits{max_batch});
}

Result<std::optional<QuizRecord>> Engine::stored_quiz(int64_t quiz_id) const {
  {
    MutexLock lock(learn_mu_);
    auto it = unknown_until_ms_.find(quiz_id);
    if (it != unknown_until_ms_.end() && it->second > now_ms()) return std::optional<QuizRecord>();
  }
  auto rec = store_->load_quiz(quiz_id);
  if (rec.ok() && !*rec) {
    MutexLock lock(learn_mu_);
    if (unknown_until_ms_.size() > 100000) unknown_until_ms_.clear();
    unknown_until_ms_[quiz_id] = now_ms() + 1000;
  }
  return rec;
}

Status Engine::learn_quiz(int64_t quiz_id) {
  auto snap = catalog_.snapshot();
  if (snap->find(quiz_id) || snap->is_finalized(quiz_id)) return Status();
  auto rec = stored_quiz(quiz_id);
  if (!rec.ok()) return rec.status();
  if (!*rec) return Status();
  const QuizRecord& r = **rec;
  if (r.state == QuizState::finalized) {
    catalog_.set_state(quiz_id, QuizState::finalized);
    return Status();
  }
  catalog_.put(r.def);
  if (r.state == QuizState::closed) catalog_.set_state(quiz_id, QuizState::closed);
  spdlog::info("quiz {} learnt from PostgreSQL (created through another instance)", quiz_id);
  schedule_finalization(quiz_id, r.state == QuizState::closed
                                     ? 0
                                     : stages::finalize_due_ms(r.def, config_.close_grace_ms));
  return Status();
}

void Engine::forget_quizzes(const std::vector<int64_t>& quiz_ids) {
  for (int64_t q : quiz_ids) standings_->erase(q);
}

Result<SaveQuizResult> Engine::create_quiz(const QuizDef& quiz) {
  auto res = store_->save_quiz(quiz);
  if (res.ok() && *res != SaveQuizResult::conflict) {
    auto snap = catalog_.snapshot();
    if (!snap->find(quiz.quiz_id) && !snap->is_finalized(quiz.quiz_id)) {
      if (*res == SaveQuizResult::created) standings_->add_empty(quiz.quiz_id);  // nothing stored
      catalog_.put(quiz);
      schedule_finalization(quiz.quiz_id, stages::finalize_due_ms(quiz, config_.close_grace_ms));
    }
  }
  return res;
}

void Engine::schedule_finalization(int64_t quiz_id, int64_t due_ms) {
  // Through the admission gate, like submit(): stop() closes it before draining, so nothing
  // reaches the graph after its drain. (A quiz not scheduled now is scheduled by the next
  // start, from what PostgreSQL stores.)
  const GatePass pass(gate_);
  if (pass.entered()) graph_->schedule_finalization(quiz_id, due_ms);
}

Result<CloseResult> Engine::close_quiz(int64_t quiz_id) {
  auto snap = catalog_.snapshot();
  if (snap->is_finalized(quiz_id)) return CloseResult::finalized;
  auto res = store_->close_quiz(quiz_id);
  if (!res.ok()) return res;
  switch (*res) {
    case CloseResult::closed:
    case CloseResult::already_closed:
      catalog_.set_state(quiz_id, QuizState::closed);
      schedule_finalization(quiz_id, 0);
      break;
    case CloseResult::finalized:  // by another engine
      catalog_.set_state(quiz_id, QuizState::finalized);
      standings_->erase(quiz_id);
      break;
    case CloseResult::unknown:
      break;
  }
  return res;
}

Status Engine::ensure_loaded(int64_t quiz_id) const {
  return standings_->ensure_loaded(quiz_id, [&] { return store_->load_counted(quiz_id); });
}

Result<std::optional<QuizView>> Engine::quiz(int64_t quiz_id) const {
  auto snap = catalog_.snapshot();
  if (const QuizDef* q = snap->find(quiz_id))
    return std::optional<QuizView>(QuizView{*q, snap->state_of(*q, now_ms())});
  auto stored = stored_quiz(quiz_id);
  if (!stored.ok()) return stored.status();
  if (!*stored) return std::optional<QuizView>();
  const QuizState state = snap->is_finalized(quiz_id)
                              ? QuizState::finalized
                              : visible_state((*stored)->state, (*stored)->def, now_ms());
  return std::optional<QuizView>(QuizView{(*stored)->def, state});
}

Result<Engine::Holder> Engine::holder_of(int64_t quiz_id, const CatalogSnapshot& snap) const {
  if (snap.is_finalized(quiz_id)) return Holder::stored_final;
  if (snap.find(quiz_id)) return Holder::memory;
  auto rec = stored_quiz(quiz_id);
  if (!rec.ok()) return rec.status();
  if (!*rec) return Holder::none;
  return (*rec)->state == QuizState::finalized ? Holder::stored_final : Holder::stored_live;
}

Result<std::optional<LeaderboardPage>> Engine::leaderboard(int64_t quiz_id, size_t offset,
                                                           size_t limit) const {
  LeaderboardPage page;
  page.quiz_id = quiz_id;
  for (;;) {
    auto where = holder_of(quiz_id, *catalog_.snapshot());
    if (!where.ok()) return where.status();
    if (*where == Holder::none) return std::optional<LeaderboardPage>();
    if (*where == Holder::stored_live) {
      auto rows = store_->load_standings(quiz_id);
      if (!rows.ok()) return rows.status();
      page.total = static_cast<int64_t>(rows->size());
      page.entries = stages::rank_page(std::move(rows).value(), offset, limit);
      return std::optional<LeaderboardPage>(std::move(page));
    }
    if (*where == Holder::stored_final) {
      auto fin = store_->final_standings(quiz_id, offset, limit);
      if (!fin.ok()) return fin.status();
      page.total = fin->total;
      page.entries = std::move(fin->entries);
      return std::optional<LeaderboardPage>(std::move(page));
    }
    if (Status s = ensure_loaded(quiz_id); !s.ok()) return s;
    standings_->read(quiz_id, [&](const stages::QuizStandings* s) {
      if (!s) return 0;
      page.total = static_cast<int64_t>(s->players());
      page.entries = s->page(offset, limit);
      return 0;
    });
    if (!left_memory_meanwhile(quiz_id)) return std::optional<LeaderboardPage>(std::move(page));
  }
}

Result<std::optional<std::optional<StandingEntry>>> Engine::player(int64_t quiz_id,
                                                                   int64_t user_id) const {
  using Out = std::optional<std::optional<StandingEntry>>;
  for (;;) {
    auto where = holder_of(quiz_id, *catalog_.snapshot());
    if (!where.ok()) return where.status();
    if (*where == Holder::none) return Out();
    if (*where == Holder::stored_live) {
      auto rows = store_->load_standings(quiz_id);
      if (!rows.ok()) return rows.status();
      return Out(stages::rank_of(*rows, user_id));
    }
    if (*where == Holder::stored_final) {
      auto fin = store_->final_standing(quiz_id, user_id);
      if (!fin.ok()) return fin.status();
      return Out(*fin);
    }
    if (Status s = ensure_loaded(quiz_id); !s.ok()) return s;
    auto entry = standings_->read(quiz_id, [&](const stages::QuizStandings* s) {
      return s ? s->find(user_id) : std::optional<StandingEntry>{};
    });
    if (!left_memory_meanwhile(quiz_id)) return Out(std::move(entry));
  }
}

// A read that loaded a live quiz may race its finalization (which drops it from memory): then
// the load brought it back. Drops it again and tells the caller to read from PostgreSQL.
bool Engine::left_memory_meanwhile(int64_t quiz_id) const {
  if (!catalog_.snapshot()->is_finalized(quiz_id)) return false;
  standings_->erase(quiz_id);
  return true;
}

Result<std::optional<std::vector<RewardRow>>> Engine::rewards(int64_t quiz_id) const {
  using Out = std::optional<std::vector<RewardRow>>;
  auto where = holder_of(quiz_id, *catalog_.snapshot());
  if (!where.ok()) return where.status();
  if (*where == Holder::none) return Out();
  if (*where != Holder::stored_final) return Out(std::vector<RewardRow>{});  // not finalized yet
  auto r = store_->rewards(quiz_id);
  if (!r.ok()) return r.status();
  return Out(std::move(r).value());
}

Engine::QuizCounts Engine::quiz_counts() const {
  QuizCounts c;
  auto snap = catalog_.snapshot();
  const int64_t now = now_ms();
  for (const auto& [id, q] : snap->quizzes) {
    if (snap->state_of(*q, now) == QuizState::open)
      ++c.open;
    else
      ++c.closed;
  }
  c.finalized = static_cast<int64_t>(snap->finalized->size());
  c.in_memory = static_cast<int64_t>(standings_->size());
  return c;
}

namespace {

// A ping still waiting after this long reports its server as not answering (a pool checkout
// alone may wait DB_CHECKOUT_TIMEOUT_MS, 5 s by default); the monitor's other queries (a
// rebuilt quiz's reload can take seconds) after the longer one.
constexpr int64_t kPingAnswerMs = 6000;
constexpr int64_t kQueryAnswerMs = 30000;

// Whether a check begun at `since` (0: none running) has gone unanswered too long; then `ok` is
// cleared and `error` says so.
void unanswered_check(int64_t since, int64_t limit, int64_t now, const char* server, bool& ok,
                      std::string& error) {
  if (since == 0 || now - since < limit) return;
  ok = false;
  error = std::string(server) + " has not answered for " + std::to_string(now - since) + " ms";
}

}  // namespace

HealthReport Engine::health() const {
  MutexLock lock(health_mu_);
  HealthReport h = health_;
  h.running = running();
  h.draining = draining_.load(std::memory_order_acquire);
  h.degraded = metrics_.degraded.load(std::memory_order_relaxed);
  const int64_t now = steady_ms();
  unanswered_check(db_check_since_ms_.load(), kPingAnswerMs, now, "PostgreSQL", h.database_ok,
                   h.database_error);
  unanswered_check(db_query_since_ms_.load(), kQueryAnswerMs, now, "PostgreSQL", h.database_ok,
                   h.database_error);
  unanswered_check(kafka_check_since_ms_.load(), kPingAnswerMs, now, "Kafka", h.kafka_ok,
                   h.kafka_error);
  // Work has waited for the database threads without a break, and nothing committed meanwhile.
  const BatchMetrics& bm = metrics_.batches;
  const int64_t busy = bm.busy_since_ms.load(std::memory_order_relaxed);
  const int64_t stalled =
      busy == 0 ? 0 : now - std::max(busy, bm.last_success_at_ms.load(std::memory_order_relaxed));
  if (stalled >= config_.health_max_commit_stall_ms) {
    h.commits_ok = false;
    h.commits_error = "no transaction committed for " + std::to_string(stalled) +
                      " ms while work waits (QUIZFLOW_HEALTH_MAX_COMMIT_STALL_MS " +
                      std::to_string(config_.health_max_commit_stall_ms) + ")";
  }
  h.healthy =
      h.running && !h.draining && !h.degraded && h.database_ok && h.kafka_ok && h.commits_ok;
  return h;
}

StatsReport Engine::stats() const { return collect_stats(*this); }

SinkStats Engine::sink_stats() const { return sink_->stats(); }

PoolStats Engine::pool_stats() const { return store_->pool_stats(); }

int64_t Engine::pending_events() const {
  ReaderLock lock(graph_mu_);
  return graph_ ? graph_->pending_events() : 0;
}

std::vector<std::pair<int64_t, int64_t>> Engine::largest_pending() const {
  ReaderLock lock(graph_mu_);
  return graph_ ? graph_->largest_pending() : std::vector<std::pair<int64_t, int64_t>>{};
}

int64_t Engine::uptime_s() const { return running() ? (now_ms() - started_ms_.load()) / 1000 : 0; }

void Engine::refresh_rebuilt() {
  const auto in_memory = standings_->versions();
  if (in_memory.empty()) return;
  std::vector<int64_t> ids;
  ids.reserve(in_memory.size());
  for (const auto& [quiz, version] : in_memory) ids.push_back(quiz);
  auto stored = store_->standings_versions(ids);
  static LogRate rate;
  int64_t more = 0;
  if (!stored.ok()) {
    if (rate.allow(more))
      spdlog::warn("checking for rebuilt standings failed: {} ({} similar lines held back)",
                   stored.status().to_string(), more);
    return;
  }
  std::unordered_map<int64_t, int64_t> memory(in_memory.begin(), in_memory.end());
  for (const auto& [quiz, version] : *stored) {
    if (version <= memory[quiz]) continue;
    const int64_t q = quiz;
    auto rows = store_->load_counted(q);
    if (!rows.ok()) {
      if (rate.allow(more))
        spdlog::warn(
            "reloading the rebuilt standings of quiz {} failed: {} ({} similar lines held "
            "back)",
            q, rows.status().to_string(), more);
      continue;
    }
    if (!standings_->refresh(q, *rows)) continue;  // a batch reloaded it first
    metrics_.batches.replay_refreshes.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("quiz {}: standings rebuilt by a replay (version {}); reloaded", q, version);
  }
}

void Engine::sync_states() {
  auto snap = catalog_.snapshot();
  std::vector<int64_t> live;
  for (const auto& [id, def] : snap->quizzes)
    if (snap->state_of(*def, now_ms()) == QuizState::open) live.push_back(id);
  if (live.empty()) return;
  auto states = store_->quiz_states(live);
  if (!states.ok()) return;  // the health check reports the database
  for (const auto& [quiz, state] : *states) {
    catalog_.set_state(quiz, QuizState::closed);  // new answers refused from now on
    spdlog::info("quiz {} was {} elsewhere; finalizing it here too", quiz, to_string(state));
    schedule_finalization(quiz, 0);
  }
}

// Checks PostgreSQL and Kafka once a second, every 100 ms while a check fails (the checks block
// on I/O; health() never does), every 250 ms whether a replay rebuilt quizzes in memory, and
// every second whether live quizzes were closed or finalized elsewhere.
void Engine::monitor_loop() {
  using Clock = std::chrono::steady_clock;
  bool was_ok = true;
  auto next_check = Clock::now(), next_sync = Clock::now(), failing_since = Clock::now();
  for (;;) {
    if (Clock::now() >= next_check) {
      db_check_since_ms_.store(steady_ms());
      const Status db = store_->ping();
      db_check_since_ms_.store(0);
      kafka_check_since_ms_.store(steady_ms());
      const Status kafka = sink_->health();
      kafka_check_since_ms_.store(0);
      const bool ok = db.ok() && kafka.ok();
      if (was_ok && !ok) {
        failing_since = Clock::now();
        spdlog::warn("health check failing: database={} kafka={}", db.to_string(),
                     kafka.to_string());
      } else if (!was_ok && ok) {
        spdlog::info(
            "health check passing again after {} ms",
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - failing_since)
                .count());
      }
      was_ok = ok;
      MutexLock lock(health_mu_);
      health_.database_ok = db.ok();
      health_.database_error = db.ok() ? "" : db.message();
      health_.kafka_ok = kafka.ok();
      health_.kafka_error = kafka.ok() ? "" : kafka.message();
      // A failing check is repeated sooner: right after start-up the producer may not have
      // reached its broker yet, and a recovery is seen within 100 ms.
      next_check =
          Clock::now() + (ok ? std::chrono::milliseconds(1000) : std::chrono::milliseconds(100));
    }
    bool db_ok = false;
    {
      MutexLock lock(health_mu_);
      db_ok = health_.database_ok;
    }
    try {
      // Database calls too: one that does not return shows in health() like a hung ping.
      db_query_since_ms_.store(steady_ms());
      if (db_ok) refresh_rebuilt();  // a Kafka outage does not hold it back
      if (db_ok && Clock::now() >= next_sync) {
        sync_states();
        next_sync = Clock::now() + std::chrono::seconds(1);
      }
      db_query_since_ms_.store(0);
    } catch (const std::exception& e) {
      db_query_since_ms_.store(0);
      static LogRate rate;
      if (int64_t more = 0; rate.allow(more))
        spdlog::error("checking for rebuilt standings failed: {} ({} similar lines held back)",
                      e.what(), more);
    }
    MutexLock lock(health_mu_);
    const auto wake = std::min(next_check, Clock::now() + std::chrono::milliseconds(250));
    while (!stop_monitor_ && health_cv_.wait_until(health_mu_, wake)) {
    }
    if (stop_monitor_) return;
  }
}

}  // namespace quizflow
