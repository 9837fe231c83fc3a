#include "ingress/status_page.h"

namespace quizflow::ingress {

namespace {

// Kept free of any URL with a scheme: tests/unit/status_page_html_test.cpp checks that nothing
// here can make the browser reach beyond the engine.
constexpr std::string_view kPage = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>quizflow status</title>
<link rel="icon" href="data:,">
<style>
:root {
  color-scheme: light dark;
  --bg: #f4f6f8; --fg: #1c232b; --muted: #5d6977; --card: #ffffff; --line: #d5dbe2;
  --ok: #1e8a4c; --warn: #b06d00; --bad: #c53030; --accent: #2b6cb0;
  --warn-bg: #fff6e0; --bad-bg: #fde8e8;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #13171c; --fg: #e2e8ef; --muted: #8d99a7; --card: #1b2128; --line: #2d3640;
    --ok: #4cc38a; --warn: #f0b44c; --bad: #ff7b7b; --accent: #6cb4f0;
    --warn-bg: #2f2613; --bad-bg: #361b1d;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; padding: 12px 24px 16px; background: var(--bg); color: var(--fg);
  font: 14px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-variant-numeric: tabular-nums;
}
header { display: flex; align-items: center; gap: 16px; flex-wrap: wrap; }
h1 { font-size: 20px; margin: 0; font-weight: 650; letter-spacing: .2px; }
h1 small { color: var(--muted); font-weight: 400; }
.pill {
  padding: 3px 12px; border-radius: 999px; font-weight: 600; border: 1px solid var(--line);
  background: var(--card); color: var(--muted); text-transform: uppercase; font-size: 12px;
  letter-spacing: .6px;
}
.pill[data-health="healthy"] { color: var(--ok); border-color: var(--ok); }
.pill[data-health="unhealthy"], .pill[data-health="unreachable"] {
  color: #fff; background: var(--bad); border-color: var(--bad);
}
.meta { color: var(--muted); margin-left: auto; }
.summary { display: flex; gap: 28px; margin: 8px 0 2px; color: var(--muted); }
.summary b { color: var(--fg); font-size: 18px; font-weight: 600; margin-right: 4px; }
#banner {
  display: none; margin: 10px 0 0; padding: 8px 12px; border-radius: 6px;
  background: var(--bad-bg); color: var(--bad); border: 1px solid var(--bad); font-weight: 500;
}
#banner.show { display: block; }
.flow { display: flex; align-items: stretch; margin: 10px 0 12px; }
.arrow {
  flex: 0 0 34px; display: flex; flex-direction: column; align-items: center;
  justify-content: center; color: var(--muted); font-size: 11px;
}
.arrow svg { width: 30px; height: 16px; }
.card {
  background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px;
  position: relative;
}
.stage { flex: 1 1 0; min-width: 0; }
.card h2 { font-size: 15px; margin: 0; font-weight: 650; }
.card .what { margin: 1px 0 6px; color: var(--muted); font-size: 12px; }
.rate { font-size: 24px; font-weight: 600; }
.rate small, .unit { color: var(--muted); font-size: 12px; font-weight: 400; }
.spark { width: 100%; height: 26px; display: block; margin: 2px 0 6px; }
.spark polyline { fill: none; stroke: var(--accent); stroke-width: 1.5; }
dl { display: grid; grid-template-columns: auto auto; gap: 1px 8px; margin: 0; font-size: 13px; }
dt { color: var(--muted); }
dd { margin: 0; text-align: right; white-space: nowrap; }
.card.warn { border-color: var(--warn); background: var(--warn-bg); }
.card.bad { border-color: var(--bad); background: var(--bad-bg); }
.note { min-height: 1.3em; margin-top: 6px; font-size: 12px; font-weight: 600; }
.card.warn .note { color: var(--warn); }
.card.bad .note { color: var(--bad); }
.panels { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 12px; }
.panel h2 { margin-bottom: 6px; }
#checks { list-style: none; padding: 0; margin: 0; }
#checks li { display: flex; justify-content: space-between; gap: 8px; padding: 1px 0; }
#checks li span:first-child { color: var(--muted); }
#checks li.failing span:last-child { color: var(--bad); font-weight: 600; text-align: right; }
body[data-state="unreachable"] .flow, body[data-state="unreachable"] .panel:not(#health-panel) {
  opacity: .45;
}
footer { margin-top: 10px; color: var(--muted); font-size: 12px; }
</style>
</head>
<body data-state="loading" data-samples="0">
<header>
  <h1>quizflow <small>status</small></h1>
  <span id="health" class="pill" data-health="loading">loading</span>
  <span class="meta">engine <span id="engine-status">—</span> · up <span id="uptime">—</span>
    · updated <span id="updated">never</span></span>
</header>
<div class="summary">
  <span><b data-field="answers_rate" id="answers-rate">—</b>answers/s in</span>
  <span><b data-field="rows_rate" id="rows-rate">—</b>rows/s committed</span>
  <span><b data-field="commits_rate" id="commits-rate">—</b>commits/s</span>
</div>
<div id="banner" role="alert"></div>
<section class="flow" id="flow" aria-label="stages"></section>
<section class="panels" id="panels"></section>
<footer>Refreshed every second from <code>/monitoring/stats</code> and <code>/health</code>;
rates are over the last 5 s. Latencies and waits in milliseconds.</footer>
<script>
"use strict";
const STAGES = [
  ["ingest", "bytes → answer events"],
  ["validate", "quiz rules, duplicates"],
  ["batch", "per-quiz buffers"],
  ["score", "standings after commit"],
  ["notify", "outbox → Kafka"],
];
const STAGE_ROWS = [
  ["backlog", "backlog", ""], ["in_flight", "in flight", ""],
  ["oldest_wait_ms", "oldest wait", "ms"], ["processed", "processed", ""],
  ["rejected", "rejected", ""], ["failed", "failed", ""],
  ["latency_p50", "latency p50", "ms"], ["latency_p99", "latency p99", "ms"],
];
// Panels: [section, title, rows]; a row is [field, label, unit, value(stats, history)].
const g = (path) => (s) => path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), s);
const PANELS = [
  ["batches", "Batches (commits)", [
    ["committed", "committed", "", g("batches.committed")],
    ["rows", "rows", "", g("batches.rows")],
    ["rows_rate", "rows/s", "", (s, h) => rate(h, "batches.rows")],
    ["commit_p50", "commit p50", "ms", g("batches.commit_ms.p50")],
    ["commit_p99", "commit p99", "ms", g("batches.commit_ms.p99")],
    ["last_commit_ms", "last commit", "ms", g("batches.last_commit_ms")],
    ["pending_events", "pending events", "", g("batches.pending_events")],
    ["failed", "failed", "", g("batches.failed")],
  ]],
  ["database_pool", "Database pool", [
    ["checked_out_connections", "checked out", "", g("database_pool.checked_out_connections")],
    ["total_connections", "open", "", g("database_pool.total_connections")],
    ["pool_size", "pool size", "", g("database_pool.pool_size")],
    ["max_overflow", "max overflow", "", g("database_pool.max_overflow")],
    ["overflow_connections", "overflow open", "", g("database_pool.overflow_connections")],
    ["wait_count", "waits", "", g("database_pool.wait_count")],
    ["wait_ms_p99", "wait p99", "ms", g("database_pool.wait_ms_p99")],
    ["timeouts", "timeouts", "", g("database_pool.timeouts")],
  ]],
  ["outbox", "Outbox", [
    ["unsent", "unsent", "", g("outbox.unsent")],
    ["oldest_unsent_ms", "oldest unsent", "ms", g("outbox.oldest_unsent_ms")],
    ["relayed", "relayed", "", g("outbox.relayed")],
    ["resent", "resent", "", g("outbox.resent")],
    ["undelivered", "undelivered", "", g("outbox.undelivered")],
  ]],
  ["message_queue", "Kafka producer", [
    ["queue_size", "queue", "", g("message_queue.queue_size")],
    ["total_processed", "delivered", "", g("message_queue.total_processed")],
    ["delivered_rate", "delivered/s", "", (s, h) => rate(h, "message_queue.total_processed")],
    ["failed", "failed", "", g("message_queue.failed")],
    ["running", "running", "", g("message_queue.running")],
  ]],
  ["quizzes", "Quizzes", [
    ["open", "open", "", g("quizzes.open")],
    ["closed", "closed", "", g("quizzes.closed")],
    ["finalized", "finalized", "", g("quizzes.finalized")],
    ["in_memory", "in memory", "", g("quizzes.in_memory")],
    ["rewards_granted", "rewards granted", "", g("quizzes.rewards_granted")],
  ]],
  ["http", "HTTP", [
    ["events_in_flight", "answers in flight", "", g("http.events_in_flight")],
    ["max_in_flight", "in-flight limit", "", g("http.max_in_flight")],
    ["connections", "connections", "", g("http.connections")],
    ["overloaded", "overloaded (503)", "", g("http.overloaded")],
    ["timed_out", "timed out", "", g("http.timed_out")],
    ["connections_refused", "connections refused", "", g("http.connections_refused")],
  ]],
  ["engine", "Engine", [
    ["internal_errors", "internal errors", "", g("engine.internal_errors")],
    ["degraded", "degraded", "", g("engine.degraded")],
    ["consumer_lag", "Kafka consumer lag", "", (s) => consumerLag(s)],
    ["consumer_paused", "consumer paused", "", g("consumer.paused")],
  ]],
];
const WINDOW = 5;      // samples a rate spans (one a second)
const KEEP = 60;       // samples kept for the sparklines
const history = [];    // {t: ms (performance.now), s: stats}
let lastOk = null, failingSince = null, lastHealth = null, lastError = "";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}
function figure(field, unit) {
  const dd = el("dd", {}, el("span", {"data-field": field}, "—"));
  if (unit) dd.append(" ", el("span", {class: "unit"}, unit));
  return dd;
}
function build() {
  const flow = document.getElementById("flow");
  STAGES.forEach(([name, what], i) => {
    if (i > 0) {
      const a = el("div", {class: "arrow", "aria-hidden": "true"});
      a.innerHTML = '<svg viewBox="0 0 30 16"><path d="M1 8h24M19 2l7 6-7 6" fill="none" ' +
                    'stroke="currentColor" stroke-width="2"/></svg>';
      if (name === "score") a.append(el("span", {}, "commit"));
      flow.append(a);
    }
    const dl = el("dl");
    for (const [f, label, unit] of STAGE_ROWS) dl.append(el("dt", {}, label), figure(f, unit));
    const spark = el("div");
    spark.innerHTML = '<svg class="spark" viewBox="0 0 100 26" preserveAspectRatio="none">' +
                      '<polyline points=""/></svg>';
    flow.append(el("article", {class: "card stage", "data-stage": name},
      el("h2", {}, name), el("p", {class: "what"}, what),
      el("div", {class: "rate"}, el("span", {"data-field": "rate"}, "—"), " ", el("small", {}, "/s")),
      spark.firstChild, dl, el("div", {class: "note"})));
  });
  const panels = document.getElementById("panels");
  const hp = el("article", {class: "card panel", id: "health-panel", "data-panel": "health"},
    el("h2", {}, "Health"), el("ul", {id: "checks"}), el("div", {class: "note"}));
  panels.append(hp);
  for (const [id, title, rows] of PANELS) {
    const dl = el("dl");
    for (const [f, label, unit] of rows) dl.append(el("dt", {}, label), figure(f, unit));
    panels.append(el("article", {class: "card panel", "data-panel": id},
      el("h2", {}, title), dl, el("div", {class: "note"})));
  }
}

function num(v) { return typeof v === "number" && isFinite(v) ? v : null; }
function fmt(v) {
  if (typeof v === "boolean") return v ? "yes" : "no";
  v = num(v);
  if (v === null) return "—";
  const digits = Math.abs(v) >= 100 || Number.isInteger(v) ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return v.toLocaleString("en-US", {maximumFractionDigits: digits, minimumFractionDigits: 0});
}
// Per second over the last WINDOW samples; null until there are two, or after a restart.
function rate(h, path) {
  if (h.length < 2) return null;
  const a = h[Math.max(0, h.length - 1 - WINDOW)], b = h[h.length - 1];
  const va = num(g(path)(a.s)), vb = num(g(path)(b.s));
  if (va === null || vb === null || b.t <= a.t || vb < va) return null;
  return (vb - va) * 1000 / (b.t - a.t);
}
// True when the value at `path` went up within the rate window.
function rose(h, path) {
  if (h.length < 2) return false;
  const a = num(g(path)(h[Math.max(0, h.length - 1 - WINDOW)].s));
  const b = num(g(path)(h[h.length - 1].s));
  return a !== null && b !== null && b > a;
}
// True when the value at `path` is above zero and rose at each of the last three samples.
function growing(h, path) {
  if (h.length < 4) return false;
  const v = h.slice(-4).map((x) => num(g(path)(x.s)));
  return v.every((x) => x !== null) && v[3] > 0 && v[1] > v[0] && v[2] > v[1] && v[3] > v[2];
}
function consumerLag(s) {
  if (!s.consumer || !s.consumer.lag) return null;
  return Object.values(s.consumer.lag).reduce((a, b) => a + (num(b) || 0), 0);
}
function set(scope, field, value) {
  const e = scope.querySelector('[data-field="' + field + '"]');
  if (e) e.textContent = fmt(value);
}
function trouble(card, level, text) {
  card.classList.toggle("warn", level === "warn");
  card.classList.toggle("bad", level === "bad");
  card.dataset.trouble = level || "";
  card.querySelector(".note").textContent = text || "";
}
function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + String(m).padStart(2, "0") + "m";
  return m + "m " + String(s % 60).padStart(2, "0") + "s";
}

function renderStats(s) {
  const h = history;
  document.getElementById("engine-status").textContent = s.status || "—";
  document.getElementById("uptime").textContent = num(s.uptime_s) === null ? "—" : duration(s.uptime_s);
  document.getElementById("answers-rate").textContent = fmt(rate(h, "stages.ingest.processed"));
  document.getElementById("rows-rate").textContent = fmt(rate(h, "batches.rows"));
  document.getElementById("commits-rate").textContent = fmt(rate(h, "batches.committed"));
  for (const [name] of STAGES) {
    const card = document.querySelector('[data-stage="' + name + '"]');
    const st = (s.stages || {})[name] || {};
    const p = "stages." + name + ".";
    set(card, "rate", rate(h, p + "processed"));
    for (const f of ["backlog", "in_flight", "oldest_wait_ms", "processed", "rejected", "failed"])
      set(card, f, st[f]);
    set(card, "latency_p50", (st.latency_ms || {}).p50);
    set(card, "latency_p99", (st.latency_ms || {}).p99);
    const rates = [];
    for (let i = 1; i < h.length; ++i) rates.push(rate(h.slice(0, i + 1), p + "processed") || 0);
    const max = Math.max(1, ...rates);
    card.querySelector("polyline").setAttribute("points", rates.map((r, i) =>
      (rates.length < 2 ? 0 : i * 100 / (rates.length - 1)).toFixed(1) + "," +
      (25 - r * 24 / max).toFixed(1)).join(" "));
    if (rose(h, p + "failed")) trouble(card, "bad", "failures in the last " + WINDOW + " s");
    else if (growing(h, p + "backlog")) trouble(card, "warn", "backlog growing");
    else if ((num(st.oldest_wait_ms) || 0) > 2000) trouble(card, "warn", "items wait > 2 s");
    else trouble(card, "", "");
  }
  for (const [id, , rows] of PANELS) {
    const card = document.querySelector('[data-panel="' + id + '"]');
    for (const [f, , , get] of rows) set(card, f, get(s, h));
  }
  const panel = (id) => document.querySelector('[data-panel="' + id + '"]');
  trouble(panel("batches"), rose(h, "batches.failed") ? "bad" : "",
          rose(h, "batches.failed") ? "transactions failed" : "");
  trouble(panel("database_pool"),
          rose(h, "database_pool.timeouts") ? "bad" : rose(h, "database_pool.wait_count") ? "warn" : "",
          rose(h, "database_pool.timeouts") ? "connection timeouts"
          : rose(h, "database_pool.wait_count") ? "callers wait for connections" : "");
  const oldest = num(g("outbox.oldest_unsent_ms")(s)) || 0;
  trouble(panel("outbox"), rose(h, "outbox.undelivered") ? "bad" : oldest > 10000 ? "warn" : "",
          rose(h, "outbox.undelivered") ? "notifications undelivered"
          : oldest > 10000 ? "notifications wait > 10 s" : "");
  const mqDown = g("message_queue.running")(s) === false;
  trouble(panel("message_queue"), mqDown ? "bad" : rose(h, "message_queue.failed") ? "warn" : "",
          mqDown ? "producer not running" : rose(h, "message_queue.failed") ? "deliveries failed" : "");
  const shed = rose(h, "http.overloaded") || rose(h, "http.timed_out");
  trouble(panel("http"), shed ? "warn" : "", shed ? "answers refused (503) recently" : "");
  const degraded = g("engine.degraded")(s) === true;
  trouble(panel("engine"), degraded || rose(h, "engine.internal_errors") ? "bad" : "",
          degraded ? "degraded: restart" : rose(h, "engine.internal_errors") ? "internal errors" : "");
}

function renderHealth(state, checks) {
  const pill = document.getElementById("health");
  pill.dataset.health = state;
  pill.textContent = state;
  const ul = document.getElementById("checks");
  ul.replaceChildren();
  for (const [k, v] of Object.entries(checks || {})) {
    const li = el("li", {"data-check": k}, el("span", {}, k), el("span", {}, String(v)));
    if (v !== "ok") li.classList.add("failing");
    ul.append(li);
  }
  const card = document.getElementById("health-panel");
  if (state === "healthy") trouble(card, "", "");
  else if (state === "unhealthy") trouble(card, "bad", "unhealthy: see the failing checks");
  else if (state === "unreachable") trouble(card, "bad", "engine unreachable");
}

function banner() {
  const b = document.getElementById("banner");
  const since = (t) => new Date(t).toLocaleTimeString("en-GB");
  let text = "";
  if (failingSince !== null) {
    text = "Engine unreachable since " + since(failingSince) + " (" + lastError + ")" +
           (lastOk === null ? "." : "; the figures below are from " + since(lastOk) + ".");
  } else if (lastHealth && lastHealth.status === "unhealthy") {
    const bad = Object.entries(lastHealth.checks || {}).filter(([, v]) => v !== "ok");
    text = "Unhealthy: " + bad.map(([k, v]) => k + ": " + v).join("; ");
  }
  b.textContent = text;
  b.classList.toggle("show", text !== "");
}

async function getJson(path) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 3000);
  try {
    const r = await fetch(path, {cache: "no-store", signal: ctl.signal});
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    return {status: r.status, body};
  } finally {
    clearTimeout(timer);
  }
}

async function poll() {
  try {
    const [stats, health] = await Promise.all([getJson("/monitoring/stats"), getJson("/health")]);
    if (stats.status !== 200 || !stats.body) throw new Error("stats: HTTP " + stats.status);
    const s = stats.body;
    const prev = history[history.length - 1];
    // A restarted engine starts its counters again: rates restart with it.
    if (prev && num(g("stages.ingest.processed")(s)) < num(g("stages.ingest.processed")(prev.s)))
      history.length = 0;
    history.push({t: performance.now(), s});
    if (history.length > KEEP) history.shift();
    lastOk = Date.now();
    failingSince = null;
    document.body.dataset.state = "live";
    document.body.dataset.samples = String(Number(document.body.dataset.samples) + 1);
    document.getElementById("updated").textContent = new Date(lastOk).toLocaleTimeString("en-GB");
    renderStats(s);
    const hb = health.body || {};
    lastHealth = hb;
    if (health.status === 200 && hb.status === "healthy") renderHealth("healthy", hb.checks);
    else renderHealth("unhealthy", hb.checks || {health: "HTTP " + health.status});
  } catch (e) {
    lastError = e && e.name === "AbortError" ? "no answer within 3 s" : String(e && e.message || e);
    if (failingSince === null) failingSince = Date.now();
    document.body.dataset.state = "unreachable";
    document.getElementById("engine-status").textContent = "unreachable";
    lastHealth = null;
    renderHealth("unreachable", null);
  }
  banner();
  setTimeout(poll, 1000);
}

build();
poll();
</script>
</body>
</html>
)html";

}  // namespace

std::string_view status_page_html() { return kPage; }

}  // namespace quizflow::ingress
