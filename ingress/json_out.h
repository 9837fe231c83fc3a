// JSON response bodies of the HTTP API (spec §3, §6). Field names are part of the contract:
// add fields, never rename them.
#pragma once

#include <string>
#include <vector>

#include "pipeline/engine.h"

namespace quizflow::ingress {

// {"error":{"code":…,"message":…,"field":…}}
std::string error_body(const std::string& code, const std::string& message,
                       const std::string& field);

// POST /v1/answers: per-item results in input order, or the request-level error. Sets
// `http_status`: 200, the request error's status, or 503 when an item could not be stored.
std::string answers_body(const Request& r, int& http_status);

// The quiz and its state; without `with_answers` the questions leave out correct_option.
std::string quiz_body(const QuizDef& q, QuizState state, bool with_answers);
std::string leaderboard_body(const LeaderboardPage& page);
std::string player_body(int64_t quiz_id, const StandingEntry& e);
// POST /v1/quizzes/{id}/close: {"quiz_id":…,"state":"closed"} (finalization follows).
std::string close_body(int64_t quiz_id);
// GET /v1/quizzes/{id}/rewards: {"quiz_id":…,"rewards":[{"user_id":…,"rank":…,"reward":…}]}.
std::string rewards_body(int64_t quiz_id, const std::vector<RewardRow>& rewards);
std::string health_body(const HealthReport& h);
// One answer event in the shape POST /v1/answers takes (spec §3; the derived fields left out):
// {"event_id":…,"quiz_id":…,"user_id":…,"question_id":…,"option_id":…,"answered_at":…,
// "elapsed_ms":…}. A line of an event file (ingress/event_file.h).
std::string answer_json(const AnswerEvent& e);
// A quiz line of an event file: {"quiz":{the definition as POST /v1/quizzes takes it},
// "state":"open"|"closed"|"finalized","rewards":[{"user_id":…,"rank":…,"reward":…}],
// "events":n} (the rewards granted, empty unless finalized; n: the answer lines that follow).
std::string quiz_line_json(const QuizDef& q, QuizState state, const std::vector<RewardRow>& rewards,
                           int64_t events);

}  // namespace quizflow::ingress
