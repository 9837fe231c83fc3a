#include "pipeline/engine.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "pipeline/commit_pool.h"
#include "pipeline/graph.h"
#include "pipeline/time_util.h"

namespace quizflow {

Engine::Engine(Config config, std::unique_ptr<Store> store, std::unique_ptr<NotificationSink> sink)
    : config_(std::move(config)), store_(std::move(store)), sink_(std::move(sink)) {}

Engine::~Engine() { stop(); }

void Engine::start() {
  std::lock_guard lock(stop_mu_);
  if (running_.load()) return;
  store_->migrate();
  auto quizzes = store_->load_quizzes();
  const size_t nquizzes = quizzes.size();
  catalog_.replace_all(std::move(quizzes));
  size_t rows = 0;
  for (const auto& row : store_->load_counted()) {
    standings_.write(row.quiz_id, [&](stages::QuizStandings& s) { s.load(row); });
    ++rows;
  }
  spdlog::info("loaded {} quizzes and {} counted answers", nquizzes, rows);
  commits_ = std::make_unique<CommitPool>(*store_, config_.db_writers);
  std::unique_lock glock(graph_mu_);
  graph_ = std::make_unique<Graph>(
      GraphDeps{config_, catalog_, standings_, *commits_, *sink_, metrics_});
  glock.unlock();
  started_ms_ = now_ms();
  {
    std::lock_guard hl(health_mu_);
    health_.running = true;
    health_.database_ok = true;
  }
  running_.store(true, std::memory_order_release);
  accepting_.store(true, std::memory_order_release);
  stop_monitor_.store(false);
  monitor_ = std::thread([this] { monitor_loop(); });
}

void Engine::stop() {
  std::lock_guard lock(stop_mu_);
  if (!running_.load()) return;
  accepting_.store(false, std::memory_order_release);
  // Wait for submit() calls racing with the flag to finish handing their request over.
  while (submits_in_progress_.load(std::memory_order_acquire) > 0) std::this_thread::yield();
  const auto t0 = std::chrono::steady_clock::now();
  graph_->drain();
  commits_->stop();
  sink_->flush(5000);
  running_.store(false, std::memory_order_release);
  stop_monitor_.store(true);
  if (monitor_.joinable()) monitor_.join();
  {
    std::unique_lock glock(graph_mu_);
    graph_.reset();
  }
  commits_.reset();
  spdlog::info("engine drained in {} ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::steady_clock::now() - t0)
                                              .count());
}

SubmitResult Engine::submit(std::string body, Request::DoneFn done) {
  submits_in_progress_.fetch_add(1, std::memory_order_acq_rel);
  struct Leave {
    std::atomic<int64_t>& n;
    ~Leave() { n.fetch_sub(1, std::memory_order_acq_rel); }
  } leave{submits_in_progress_};
  if (!accepting_.load(std::memory_order_acquire)) return SubmitResult::stopped;
  // Admission estimate before parsing: a JSON answer takes well over 64 bytes. Reconciled to
  // the real item count by ingest.
  const int64_t estimate = std::max<int64_t>(1, static_cast<int64_t>(body.size() / 64));
  // Over the budget: refuse, unless nothing is in flight (a request larger than the whole
  // budget must still be able to pass when the pipeline is empty).
  const int64_t in_flight = metrics_.events_in_flight.load(std::memory_order_relaxed);
  if (in_flight > 0 && in_flight + estimate > config_.max_in_flight_events) {
    metrics_.http_overloaded.fetch_add(1, std::memory_order_relaxed);
    return SubmitResult::overloaded;
  }
  metrics_.events_in_flight.fetch_add(estimate, std::memory_order_relaxed);
  auto release = [this, done = std::move(done)](Request& r) {
    metrics_.events_in_flight.fetch_sub(r.admitted, std::memory_order_relaxed);
    if (done) done(r);
  };
  auto r = std::make_shared<Request>(std::move(body), std::move(release));
  r->admitted = estimate;
  graph_->put(std::move(r));
  return SubmitResult::admitted;
}

SaveQuizResult Engine::create_quiz(const QuizDef& quiz) {
  const SaveQuizResult res = store_->save_quiz(quiz);
  if (res != SaveQuizResult::conflict) {
    auto snap = catalog_.snapshot();
    if (!snap->find(quiz.quiz_id)) catalog_.put(quiz);
  }
  return res;
}

std::optional<QuizView> Engine::quiz(int64_t quiz_id) const {
  auto snap = catalog_.snapshot();
  const QuizDef* q = snap->find(quiz_id);
  if (!q) return std::nullopt;
  return QuizView{*q, snap->state_of(*q, now_ms())};
}

std::optional<LeaderboardPage> Engine::leaderboard(int64_t quiz_id, size_t offset,
                                                   size_t limit) const {
  if (!catalog_.snapshot()->find(quiz_id)) return std::nullopt;
  LeaderboardPage page;
  page.quiz_id = quiz_id;
  standings_.read(quiz_id, [&](const stages::QuizStandings* s) {
    if (!s) return 0;
    page.total = static_cast<int64_t>(s->players());
    page.entries = s->page(offset, limit);
    return 0;
  });
  return page;
}

std::optional<std::optional<stages::StandingEntry>> Engine::player(int64_t quiz_id,
                                                                   int64_t user_id) const {
  if (!catalog_.snapshot()->find(quiz_id)) return std::nullopt;
  return standings_.read(quiz_id, [&](const stages::QuizStandings* s) {
    return s ? s->find(user_id) : std::optional<stages::StandingEntry>{};
  });
}

HealthReport Engine::health() const {
  std::lock_guard lock(health_mu_);
  HealthReport h = health_;
  h.running = running();
  h.healthy = h.running && h.database_ok && h.kafka_ok;
  return h;
}

SinkStats Engine::sink_stats() const { return sink_->stats(); }

PoolStats Engine::pool_stats() const { return store_->pool_stats(); }

int64_t Engine::pending_events() const {
  std::shared_lock lock(graph_mu_);
  return graph_ ? graph_->pending_events() : 0;
}

std::vector<std::pair<int64_t, int64_t>> Engine::largest_pending() const {
  std::shared_lock lock(graph_mu_);
  return graph_ ? graph_->largest_pending() : std::vector<std::pair<int64_t, int64_t>>{};
}

int64_t Engine::uptime_s() const { return running() ? (now_ms() - started_ms_) / 1000 : 0; }

void Engine::monitor_loop() {
  bool was_ok = true;
  while (!stop_monitor_.load()) {
    std::string db_why, kafka_why;
    const bool db_ok = store_->ping(db_why);
    const bool kafka_ok = sink_->healthy(kafka_why);
    {
      std::lock_guard lock(health_mu_);
      health_.database_ok = db_ok;
      health_.database_error = db_why;
      health_.kafka_ok = kafka_ok;
      health_.kafka_error = kafka_why;
    }
    if (was_ok && !(db_ok && kafka_ok))
      spdlog::warn("health check failing: database={} kafka={}", db_ok ? "ok" : db_why,
                   kafka_ok ? "ok" : kafka_why);
    was_ok = db_ok && kafka_ok;
    for (int i = 0; i < 10 && !stop_monitor_.load(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace quizflow
