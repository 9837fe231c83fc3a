// JSON bodies of the quizflow API, for the demo and the end-to-end tests: a quiz for
// POST /v1/quizzes (spec §4) and one answer for POST /v1/answers (spec §3). Header-only; needs
// RapidJSON (header-only too).
#pragma once

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tools/timestamps.h"

namespace quizflow::tools {

struct QuestionSpec {
  int question_id;
  int option_count;
  int correct_option;
  int64_t points;
  int64_t time_limit_ms;
};

struct RewardSpec {
  int rank_from;
  int rank_to;
  std::string reward;
};

// A quiz open from `opens_at_ms` to `closes_at_ms`; with no `rewards` the key is left out.
inline std::string quiz_json(int64_t quiz_id, const std::string& title, int64_t opens_at_ms,
                             int64_t closes_at_ms, const std::vector<QuestionSpec>& questions,
                             const std::vector<RewardSpec>& rewards) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("quiz_id");
  w.Int64(quiz_id);
  w.Key("title");
  w.String(title.c_str());
  w.Key("opens_at");
  w.String(rfc3339(opens_at_ms).c_str());
  w.Key("closes_at");
  w.String(rfc3339(closes_at_ms).c_str());
  w.Key("questions");
  w.StartArray();
  for (const auto& q : questions) {
    w.StartObject();
    w.Key("question_id");
    w.Int(q.question_id);
    w.Key("option_count");
    w.Int(q.option_count);
    w.Key("correct_option");
    w.Int(q.correct_option);
    w.Key("points");
    w.Int64(q.points);
    w.Key("time_limit_ms");
    w.Int64(q.time_limit_ms);
    w.EndObject();
  }
  w.EndArray();
  if (!rewards.empty()) {
    w.Key("rewards");
    w.StartArray();
    for (const auto& r : rewards) {
      w.StartObject();
      w.Key("rank_from");
      w.Int(r.rank_from);
      w.Key("rank_to");
      w.Int(r.rank_to);
      w.Key("reward");
      w.String(r.reward.c_str());
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  return sb.GetString();
}

struct AnswerBody {
  std::string event_id;
  int64_t quiz_id = 0;
  int64_t user_id = 0;
  int64_t question_id = 0;
  int64_t option_id = 0;
  std::string answered_at;  // as sent: normally rfc3339(ms)
  int64_t elapsed_ms = 0;
};

// One answer as a JSON object; `extra_field` adds "bonus":1, a member the schema does not allow.
inline std::string answer_json(const AnswerBody& a, bool extra_field = false) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("event_id");
  w.String(a.event_id.c_str());
  w.Key("quiz_id");
  w.Int64(a.quiz_id);
  w.Key("user_id");
  w.Int64(a.user_id);
  w.Key("question_id");
  w.Int64(a.question_id);
  w.Key("option_id");
  w.Int64(a.option_id);
  w.Key("answered_at");
  w.String(a.answered_at.c_str());
  w.Key("elapsed_ms");
  w.Int64(a.elapsed_ms);
  if (extra_field) {
    w.Key("bonus");
    w.Int(1);
  }
  w.EndObject();
  return sb.GetString();
}

}  // namespace quizflow::tools
