// Collects every figure of the engine (spec §6), declared once here; core/stats_report.h renders
// them as JSON and Prometheus text. Internal to pipeline/: others call Engine::stats().
#pragma once

#include "core/stats_report.h"

namespace quizflow {

class Engine;

// A consistent-enough snapshot of the engine's figures; lock-free for the hot paths.
StatsReport collect_stats(const Engine& engine);

}  // namespace quizflow
